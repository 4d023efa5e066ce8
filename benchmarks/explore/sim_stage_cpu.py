"""CPU milliseconds per galaxy of each simulator stage, in one process.

Usage:  python benchmarks/explore/sim_stage_cpu.py [--n 200] [--seed 0] [--tag new]

Builds one ``GalaxySimulator`` (default programmes), simulates row 0 to warm it up, then rows
1..n, and prints the process's CPU ms per galaxy in all and per stage (``cpu_timings``). On a
machine shared with other jobs CPU time still rises with the load (cores and caches are
shared): compare two code versions by running this script for each at the same time, e.g.
``PYTHONPATH=old/src python ... --tag old & PYTHONPATH=src python ... --tag new & wait``.
"""
from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=args.n + 1, seed=args.seed))
    sim.simulate(0)
    sim.cpu_timings.clear()
    c = time.process_time()
    for i in range(1, args.n + 1):
        sim.simulate(i)
    per = 1000 / args.n
    stages = ", ".join(f"{k.split(' (')[0]} {v * per:.1f}" for k, v in sim.cpu_timings.items())
    print(f"{args.tag}: {args.n} galaxies, seed {args.seed}, CPU {(time.process_time() - c) * per:.1f}"
          f" ms/galaxy: {stages}", flush=True)


if __name__ == "__main__":
    main()
