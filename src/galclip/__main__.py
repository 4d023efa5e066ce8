"""``python -m galclip`` runs the command line, as the ``galclip`` script does."""
import sys

from galclip.cli import main

sys.exit(main())
