"""CPU milliseconds per accepted galaxy inside the simulator's population stage, with counts.

Usage:  python benchmarks/explore/sim_population_cpu.py [--n 150] [--seed 1] [--programmes bgs,lrg]

Like ``sim_stage_cpu.py`` (one process, row 0 to warm up, then rows 1..n), with CPU timers
around the rejection sampler's parts: ``draw_galaxy`` (the draws), ``may_pass`` (the flux and
fibre bounds), ``_select`` (the exact bagpipes photometry, the cuts and GalSim's Legacy Survey
fibre fractions, also timed on their own) — and how many calls each makes per accepted galaxy.
Compare two code versions by running both at once (``PYTHONPATH=old/src ... &
PYTHONPATH=src ... & wait``): CPU time rises with the load of a shared machine.
"""
from __future__ import annotations

import argparse
import collections
import time
import warnings

warnings.filterwarnings("ignore")
LABELS = ("draw_galaxy", "may_pass (bounds)", "_select", "  exact photometry",
          "  Legacy fibre fractions", "  target bits")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--programmes", default="bgs,lrg")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    from galclip.sim import imaging, population, targeting
    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=args.n + 1, seed=args.seed, programmes=args.programmes))
    sim.simulate(0)
    cpu, calls = collections.Counter(), collections.Counter()

    def timed(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*a, **k):
            c = time.process_time()
            try:
                return inner(*a, **k)
            finally:
                cpu[label] += time.process_time() - c
                calls[label] += 1

        setattr(owner, name, wrapper)

    timed(population, "draw_galaxy", "draw_galaxy")
    timed(sim, "may_pass", "may_pass (bounds)")
    timed(sim, "_select", "_select")
    timed(sim.engine, "photometry", "  exact photometry")
    timed(imaging, "legacy_fibre_fractions", "  Legacy fibre fractions")
    timed(targeting, "target_bits", "  target bits")
    sim.cpu_timings.clear()
    c = time.process_time()
    for i in range(1, args.n + 1):
        sim.simulate(i)
    per = 1000 / args.n
    print(f"{args.tag}: {args.n} galaxies, seed {args.seed}, {args.programmes}: CPU "
          f"{(time.process_time() - c) * per:.1f} ms/galaxy")
    for stage, sec in sim.cpu_timings.items():
        print(f"  {stage:42s} {sec * per:6.1f}")
    for label in sorted(cpu, key=list(LABELS).index):
        print(f"  {label:42s} {cpu[label] * per:6.1f}  ({calls[label] / args.n:.2f} calls/galaxy)")
    print(f"  draws, accepted per programme: {sim.draws}", flush=True)


if __name__ == "__main__":
    main()
