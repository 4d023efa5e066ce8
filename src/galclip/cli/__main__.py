"""``python -m galclip.cli`` (as ``torchrun -m galclip.cli embed ...`` runs it)."""
import sys

from galclip.cli import main

sys.exit(main())
