"""Simulate a survey of paired galaxy images and spectra (the default galclip dataset).

Each galaxy's spectrum (bagpipes stellar populations + nebular emission, observed on a real DESI
tile's effective time, sky and seeing, with the pipeline's point-source calibration, a smooth
calibration error, sky-line residuals and masked pixels) and its g, r, z image (GalSim bulge +
disc + spiral arms / bars / companions, Legacy Survey noise) are rendered from the same physical
properties. Only galaxies that DESI would target are written: --programmes picks the target
classes (BGS Bright and Faint, LRG, ELG), each selected with DESI's DR9 cuts on the simulated
Legacy Survey photometry (docs/simulate.md). --report compares a dataset with real data, the
instrument effects included. --deep-fraction sets the share of spectra observed 2-5x deeper, as
DESI's Survey Validation was (default 0.25; 0 for the main survey alone). A row depends only on
(seed, row index), whatever --workers is; a killed run resumes from its finished shards when
rerun with the same command. --reference N adds N more galaxies of the same survey after the n,
labelled split "reference": never trained on or evaluated, only looked up (the search catalog,
the OOD score and `galclip predict` then hold n + N galaxies; a model reads real spectra better
from a denser reference, docs/evaluate.md). The first n rows are those of the run without it.

Examples:
  galclip simulate --n 240 --out runs/demo/sim-240 --seed 0
  galclip simulate --n 240 --out runs/demo/sim-elg --programmes bgs,lrg,elg
  galclip simulate --n 240 --out runs/demo/sim-main --deep-fraction 0
  galclip simulate --n 240 --reference 720 --out runs/demo/sim-ref
  galclip simulate --report runs/demo/data
  galclip simulate --report runs/demo/data --report-out runs/demo/realism
"""
from __future__ import annotations

import argparse

from galclip.argtypes import csv_choices, float_range, int_range, new_dir, positive_int
from galclip.sim.survey import SimConfig
from galclip.sim.targeting import CLI_NAMES

#: BGS and LRG: the real spectra galclip's sim-to-real benchmark asks about are BGS and LRG
#: galaxies, and ELGs (z 0.6-1.6, DESI's densest class) would take more than half of the
#: demo's galaxies away from them.
DEFAULT_PROGRAMMES = ["bgs", "lrg"]

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=positive_int, help="number of galaxies")
    p.add_argument("--reference", type=int_range(0), default=SimConfig.reference,
                   help="look-up-only galaxies simulated after the n, split 'reference' "
                        "(default %(default)s)")
    p.add_argument("--out", type=new_dir, help="output dataset folder (new, empty, or an interrupted run)")
    p.add_argument("--seed", type=int_range(0), default=SimConfig.seed,
                   help="random seed (default %(default)s)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default: all cores)")
    p.add_argument("--programmes", type=csv_choices(CLI_NAMES), default=DEFAULT_PROGRAMMES,
                   help="DESI target classes to simulate, comma-separated: bgs (BGS Bright and "
                        "Faint), bgs_bright, bgs_faint, lrg, elg (default: bgs,lrg)")
    p.add_argument("--mag-limit", type=float_range(10, 30), default=None,
                   help="an extra r-band limit on top of the target selection (default: none)")
    p.add_argument("--shard-size", type=positive_int, default=SimConfig.shard_size,
                   help="rows per Parquet shard (default %(default)s)")
    p.add_argument("--deep-fraction", type=float_range(0, 1), default=SimConfig.deep_fraction,
                   help="share of spectra observed at Survey-Validation depth, 2-5x the tile's "
                        "effective time (default %(default)s)")
    p.add_argument("--image-ivar", action="store_true", help="also store per-pixel image ivar")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report", metavar="DATASET", help="write the realism report of a "
                   "simulated dataset (comparison with real SDSS/DESI data) instead")
    p.add_argument("--report-out", metavar="DIR",
                   help="report folder (default: DATASET-realism, beside the dataset)")


def run(args: argparse.Namespace) -> int:
    if args.report:
        from galclip.sim.report import write_report

        path = write_report(args.report, args.report_out)
        print(f"realism report: {path}")
        return 0
    if args.n is None or args.out is None:
        raise ValueError("--n and --out are required (or --report DATASET)")
    from galclip.sim.survey import simulate_survey
    from galclip.sim.targeting import parse_programmes

    programmes = ",".join(parse_programmes(",".join(args.programmes)))
    cfg = SimConfig(n=args.n, seed=args.seed, reference=args.reference, programmes=programmes,
                    mag_limit=args.mag_limit, shard_size=args.shard_size, image_ivar=args.image_ivar,
                    deep_fraction=args.deep_fraction)
    m = simulate_survey(args.out, cfg, workers=args.workers, progress=not args.no_progress)
    shares = m.get("simulator", {}).get("programmes", {}).get("share", {})
    print(f"{args.out}: {m['n_rows']} galaxies"
          + (f" ({cfg.n} survey + {cfg.reference} reference)" if cfg.reference else "")
          + f" in {len(m['shards'])} shards ("
          + ", ".join(f"{p} {100 * f:.0f} %" for p, f in shares.items()) + ")")
    return 0
