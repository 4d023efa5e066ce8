"""The ``galclip`` command: one entry point, thin subcommands, one module per pipeline stage.

``galclip/cli/<stage>.py`` (listed in :data:`COMMANDS` in pipeline order: simulate or
build-dataset -> validate -> pretrain -> align -> embed -> index -> search / serve / export ->
evaluate; demo runs them all) exposes ``add_arguments(parser)`` and ``run(args) -> int`` over
one library function. Option defaults are read from the library's dataclasses and constants,
never written again here. Heavy libraries (torch, bagpipes, GalSim, FAISS) are imported inside
``run`` only, so ``galclip --help`` stays fast.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import re
import sys

# (name, module with add_arguments/run, one-line help), in pipeline order
COMMANDS: list[tuple[str, str, str]] = [
    ("simulate", "galclip.cli.simulate", "simulate a survey of paired galaxy images and spectra"),
    ("build-dataset", "galclip.cli.build_dataset",
     "build a dataset from DESI, Legacy Survey, AstroCLIP, MMU files"),
    ("validate", "galclip.cli.validate",
     "check a dataset or embedding catalog (with its indexes): manifest, shards, checksums"),
    ("pretrain", "galclip.cli.pretrain", "pretrain an image or spectrum encoder without labels"),
    ("align", "galclip.cli.align", "align image and spectrum encoders in one embedding space (CLIP)"),
    ("embed", "galclip.cli.embed", "embed a dataset into a searchable embedding catalog"),
    ("index", "galclip.cli.index", "build the FAISS indexes of an embedding catalog"),
    ("search", "galclip.cli.search",
     "nearest neighbours by id, cutout or spectrum (in or across modalities)"),
    ("serve", "galclip.cli.serve", "web explorer and JSON API over an embedding catalog"),
    ("export", "galclip.cli.export", "write an embedding catalog as a HATS catalog (LSDB)"),
    ("predict", "galclip.cli.predict",
     "predict properties of a catalog's galaxies from a labelled reference, calibrated intervals"),
    ("outliers", "galclip.cli.outliers",
     "score each galaxy's image-spectrum mismatch and rarity (the galaxies that do not fit)"),
    ("evaluate", "galclip.cli.evaluate",
     "score a model: k-NN, probes, morphology, retrieval, baselines; write the report"),
    ("demo", "galclip.cli.demo", "run the whole pipeline end to end on simulated data"),
]


def build_parser() -> argparse.ArgumentParser:
    from galclip import __version__

    parser = argparse.ArgumentParser(
        prog="galclip", description="galclip: galaxy images and spectra in one embedding space "
                                    "(AstroCLIP and beyond). Each command has --help.")
    parser.add_argument("--version", action="version", version=f"galclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, help_ in COMMANDS:
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:        # a usage error (status 2, message printed) or --help (0)
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("galclip: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except FileNotFoundError as e:
        print(f"galclip {args.command}: error: {missing_file_message(e)}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError) as e:
        print(f"galclip {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:           # full disk, read-only or forbidden folder, I/O error
        print(f"galclip {args.command}: error: {os_error_message(e)}", file=sys.stderr)
        return 2


#: what to do about an OSError, by errno
_OS_HINTS = {
    errno.ENOSPC: "no space left on the device: free some space (or write elsewhere) and rerun "
                  "the same command; it resumes where it stopped",
    errno.EDQUOT: "disk quota exceeded: free some space (or write elsewhere) and rerun the same "
                  "command; it resumes where it stopped",
    errno.EROFS: "the file system is read-only: choose a writable output folder",
    errno.EACCES: "permission denied: make the folder writable (readable, for an input) or "
                  "choose another",
    errno.EPERM: "operation not permitted: make the folder writable or choose another",
    errno.EIO: "input/output error from the device: check the disk, then rerun the same command",
}


def missing_file_message(e: FileNotFoundError) -> str:
    """One line for a missing file. galclip's own messages (no errno) say what to do already; one
    from the system or pyarrow (an input gone while a command ran) gets the path and the remedy."""
    if e.errno != errno.ENOENT:
        return str(e)
    path = e.filename or (re.search(r"'([^']+)'", e.strerror or "") or [None, None])[1]
    return (f"{path or e}: no such file (it vanished while the command ran, or the path is "
            "wrong): restore it or give the right path, then rerun the same command")


def os_error_message(e: OSError) -> str:
    """One line for an ``OSError``: the path it names and what to do."""
    where = f"{e.filename}: " if e.filename else ""
    hint = _OS_HINTS.get(e.errno or -1)
    if hint and getattr(e, "space", None):        # a full disk: the space needed and free
        hint = hint.replace(":", f" ({e.space}):", 1)
    return f"{where}{hint}" if hint else f"{where}{e.strerror or e}"
