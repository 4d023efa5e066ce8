"""Simulate a survey of paired galaxy images and spectra (the default galclip dataset).

Each galaxy's spectrum (bagpipes stellar populations + nebular emission, observed on a real DESI
tile's effective time, sky and seeing, with the pipeline's point-source calibration, a smooth
calibration error, sky-line residuals and masked pixels) and its g, r, z image (GalSim bulge +
disc + spiral arms / bars / companions, Legacy Survey noise) are rendered from the same physical
properties. --report compares a dataset with real data, the instrument effects included. A row
depends only on (seed, row index), whatever --workers is; a killed run resumes from its finished
shards when rerun with the same command.

Examples:
  galclip simulate --n 240 --out runs/demo/sim-240 --seed 0
  galclip simulate --report runs/demo/data
  galclip simulate --report runs/demo/data --report-out runs/demo/realism
"""
from __future__ import annotations

import argparse

from galclip.argtypes import float_range, int_range, new_dir, positive_int
from galclip.sim.survey import SimConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=positive_int, help="number of galaxies")
    p.add_argument("--out", type=new_dir, help="output dataset folder (new, empty, or an interrupted run)")
    p.add_argument("--seed", type=int_range(0), default=SimConfig.seed,
                   help="random seed (default %(default)s)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default: all cores)")
    p.add_argument("--mag-limit", type=float_range(10, 30), default=SimConfig.mag_limit,
                   help="r-band limit (default %(default)s)")
    p.add_argument("--shard-size", type=positive_int, default=SimConfig.shard_size,
                   help="rows per Parquet shard (default %(default)s)")
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

    cfg = SimConfig(n=args.n, seed=args.seed, mag_limit=args.mag_limit,
                    shard_size=args.shard_size, image_ivar=args.image_ivar)
    m = simulate_survey(args.out, cfg, workers=args.workers, progress=not args.no_progress)
    print(f"{args.out}: {m['n_rows']} galaxies in {len(m['shards'])} shards")
    return 0
