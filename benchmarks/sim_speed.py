"""Simulator speed: galaxies per second, with spectrum synthesis and image rendering timed apart.

Usage:  python benchmarks/sim_speed.py [--n-stage 60] [--n-full 400] [--workers W]
                                      [--programmes lrg,bgs_bright,bgs_faint]

Part 1 times each stage in one process (wall and CPU ms per galaxy). Part 2 runs the real
parallel ``simulate_survey`` on all cores and reports galaxies/s after start-up (start-up, i.e.
building bagpipes models in each worker, is reported separately) and the CPU seconds per
galaxy of all processes, which a machine shared with other jobs changes much less than the
rate. Target (issue 30): >= 30 galaxies/s on a 2-core machine, i.e. at most ~66 CPU ms per
galaxy with both cores busy.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")


def _cpu_all() -> float:
    """CPU seconds of this process and of its finished child processes (pool workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def stage_timings(n: int, programmes: str) -> dict[str, float]:
    from galclip.sim.survey import GalaxySimulator, SimConfig

    t0 = time.perf_counter()
    sim = GalaxySimulator(SimConfig(n=n, seed=123, programmes=programmes))
    setup = time.perf_counter() - t0
    sim.simulate(0)  # builds the spectral models
    sim.timings.clear()
    cpu_stages = getattr(sim, "cpu_timings", {})  # older simulators time wall clock only
    cpu_stages.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(1, n + 1):
        sim.simulate(i)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"one process: setup {setup:.1f} s; {n} galaxies in {total:.1f} s = "
          f"{1000 * total / n:.1f} ms/galaxy ({n / total:.1f} galaxies/s per core); "
          f"CPU {1000 * cpu / n:.1f} ms/galaxy")
    for stage, sec in sim.timings.items():
        print(f"  {stage:40s} {1000 * sec / n:7.1f} ms/galaxy  ({100 * sec / total:4.1f} %)"
              + (f"  CPU {1000 * cpu_stages[stage] / n:6.1f} ms" if stage in cpu_stages else ""))
    return {"ms_per_galaxy": 1000 * total / n, "cpu_ms_per_galaxy": 1000 * cpu / n}


def _timed_run(out: str, cfg, workers: int) -> tuple[float, float]:
    from galclip.sim.survey import simulate_survey

    t0, c0 = time.perf_counter(), _cpu_all()
    simulate_survey(out, cfg, workers=workers, progress=False)
    return time.perf_counter() - t0, _cpu_all() - c0


def full_run(n: int, workers: int, programmes: str) -> float:
    from galclip.sim.survey import SimConfig

    with tempfile.TemporaryDirectory() as tmp:
        # time a small and a large run and difference them: start-up cancels
        cfg_small = SimConfig(n=workers * 8, seed=7, shard_size=8, programmes=programmes)
        t_small, c_small = _timed_run(f"{tmp}/small", cfg_small, workers)
        cfg = SimConfig(n=n, seed=7, shard_size=32, programmes=programmes)
        t_full, c_full = _timed_run(f"{tmp}/full", cfg, workers)
    rate = (n - cfg_small.n) / max(t_full - t_small, 1e-9)
    cpu_ms = 1000 * (c_full - c_small) / (n - cfg_small.n)
    print(f"parallel ({workers} workers): {n} galaxies in {t_full:.1f} s including start-up; "
          f"{cfg_small.n} galaxies in {t_small:.1f} s; steady state {rate:.1f} galaxies/s, "
          f"{cpu_ms:.1f} CPU ms/galaxy (all processes; {c_full:.1f} CPU s in all)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-stage", type=int, default=60)
    ap.add_argument("--n-full", type=int, default=400)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--programmes", default="lrg,bgs_bright,bgs_faint",
                    help="SimConfig.programmes (default: the simulator's default, BGS and LRG)")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    print(f"programmes: {args.programmes}")
    stage_timings(args.n_stage, args.programmes)
    if args.n_full <= 16 * args.workers:
        return
    rate = full_run(args.n_full, args.workers, args.programmes)
    print(f"target >= 30 galaxies/s: {'met' if rate >= 30 else 'NOT met'} ({rate:.1f})")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
