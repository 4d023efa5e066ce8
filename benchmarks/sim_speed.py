"""Simulator speed: galaxies per second, with spectrum synthesis and image rendering timed apart.

Usage:  python benchmarks/sim_speed.py [--n-stage 60] [--n-full 400] [--workers W]

Part 1 times each stage in one process (ms per galaxy). Part 2 runs the real parallel
``simulate_survey`` on all cores and reports galaxies/s after start-up (start-up, i.e. building
bagpipes models in each worker, is reported separately). Target (issue 2): >= 15 galaxies/s
on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")


def stage_timings(n: int) -> dict[str, float]:
    from galclip.sim.survey import GalaxySimulator, SimConfig

    t0 = time.perf_counter()
    sim = GalaxySimulator(SimConfig(n=n, seed=123))
    setup = time.perf_counter() - t0
    sim.simulate(0)  # builds the spectral models
    sim.timings.clear()
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        sim.simulate(i)
    total = time.perf_counter() - t0
    print(f"one process: setup {setup:.1f} s; {n} galaxies in {total:.1f} s = "
          f"{1000 * total / n:.1f} ms/galaxy ({n / total:.1f} galaxies/s per core)")
    for stage, sec in sim.timings.items():
        print(f"  {stage:40s} {1000 * sec / n:7.1f} ms/galaxy  ({100 * sec / total:4.1f} %)")
    return {"ms_per_galaxy": 1000 * total / n}


def full_run(n: int, workers: int) -> float:
    from galclip.sim.survey import SimConfig, simulate_survey

    with tempfile.TemporaryDirectory() as tmp:
        # warm-up run builds nothing persistent; time a small and a large run and difference them
        cfg_small = SimConfig(n=workers * 8, seed=7, shard_size=8)
        t0 = time.perf_counter()
        simulate_survey(f"{tmp}/small", cfg_small, workers=workers, progress=False)
        t_small = time.perf_counter() - t0
        cfg = SimConfig(n=n, seed=7, shard_size=32)
        t0 = time.perf_counter()
        simulate_survey(f"{tmp}/full", cfg, workers=workers, progress=False)
        t_full = time.perf_counter() - t0
    rate = (n - cfg_small.n) / max(t_full - t_small, 1e-9)
    print(f"parallel ({workers} workers): {n} galaxies in {t_full:.1f} s including start-up; "
          f"{cfg_small.n} galaxies in {t_small:.1f} s; steady state {rate:.1f} galaxies/s")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-stage", type=int, default=60)
    ap.add_argument("--n-full", type=int, default=400)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    stage_timings(args.n_stage)
    if args.n_full <= 16 * args.workers:
        return
    rate = full_run(args.n_full, args.workers)
    print(f"target >= 15 galaxies/s: {'met' if rate >= 15 else 'NOT met'} ({rate:.1f})")


if __name__ == "__main__":
    main()
