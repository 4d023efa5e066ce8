"""Run the whole galclip pipeline end to end on a simulated survey.

Stages: simulate -> pretrain the image encoder (cpu and tiny: initialise it at random; it learns
in alignment) -> pretrain the spectrum encoder -> align (CLIP) -> embed -> index -> evaluate.
Each stage writes into its own folder under --out and is skipped when its output is already
complete, so rerunning the same command after a kill continues where it stopped. Ends with the
evaluation summary, the paths of the report and checkpoints, and the command that starts the
web explorer.

Presets: ``cpu`` (default; CPU-sized models, 5000 galaxies trained on and evaluated, and 15000 more
simulated for the search catalog only: --reference), ``gpu`` (larger data and models, bf16),
``tiny`` (a few hundred galaxies and a few steps per stage: a smoke test of the plumbing, not
of the science).

Example:  galclip demo --out runs/demo
"""
from __future__ import annotations

import argparse

from galclip.argtypes import int_range
from galclip.demo import OUT, PRESET, PRESETS
from galclip.precision import CHOICES
from galclip.sim.survey import SimConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=OUT, help="run folder (default %(default)s)")
    p.add_argument("--preset", default=PRESET, choices=sorted(PRESETS),
                   help="cpu (CPU-sized), gpu (larger, bf16), tiny (smoke test); default %(default)s")
    p.add_argument("--n", type=int_range(1), default=None,
                   help="number of simulated survey galaxies (default: the preset's)")
    p.add_argument("--reference", type=int_range(0), default=None,
                   help="galaxies simulated after the survey for look-up only: in the catalog, "
                        "the OOD score's calibration and predict's pool, never trained on or "
                        "evaluated (default: the preset's, 15000 for cpu; 0 saves ~6 min of a "
                        "CPU demo and reads fewer real spectra right)")
    p.add_argument("--seed", type=int_range(0), default=SimConfig.seed,
                   help="simulation seed (default %(default)s)")
    p.add_argument("--workers", type=int_range(1), default=None, help="simulator processes")
    p.add_argument("--precision", default="auto", choices=CHOICES,
                   help="training precision: auto = bf16 autocast where the CPU or GPU has bf16 "
                        "(faster; figures differ slightly between machines), 32-true = fp32 "
                        "everywhere (the same figures on every machine); default %(default)s")


def run(args: argparse.Namespace) -> int:
    from galclip.demo import run_demo

    run_demo(args.out, args.preset, args.n, args.seed, args.workers, args.precision,
             args.reference)
    return 0
