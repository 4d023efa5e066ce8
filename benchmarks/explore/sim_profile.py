"""cProfile of the survey simulator in one process: where the time per galaxy goes.

Usage:  python benchmarks/explore/sim_profile.py [--n 200] [--seed 0] [--top 30] [--out prof.pstats]

Builds one ``GalaxySimulator`` (start-up not profiled), then profiles ``simulate(i)`` for
rows 0..n-1 and prints the functions with the largest cumulative and own time, plus the
rejection sampler's counters: draws per accepted galaxy and draws that needed the exact
bagpipes photometry.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", default=None, help="also save the raw pstats here")
    args = ap.parse_args()

    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=args.n, seed=args.seed))
    calls = {"exact": 0}
    phot = sim.engine.photometry

    def counted(pop, z):
        calls["exact"] += 1
        return phot(pop, z)

    sim.engine.photometry = counted
    prof = cProfile.Profile()
    c0, t0 = time.process_time(), time.perf_counter()
    prof.enable()
    for i in range(args.n):
        sim.simulate(i)
    prof.disable()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    print(f"{args.n} galaxies: {1000 * cpu / args.n:.1f} CPU ms/galaxy, "
          f"{1000 * wall / args.n:.1f} wall ms/galaxy (profiler overhead included); "
          f"exact photometry calls (2 per draw tested) {calls['exact'] / args.n:.2f} per galaxy")
    for stage, sec in sim.timings.items():
        print(f"  {stage:40s} {1000 * sec / args.n:7.1f} ms/galaxy")
    st = pstats.Stats(prof)
    if args.out:
        st.dump_stats(args.out)
    st.sort_stats("cumulative").print_stats(args.top)
    st.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
