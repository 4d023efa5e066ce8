"""Check the simulator's r-band flux bounds against bagpipes' exact photometry.

Usage:  python benchmarks/explore/sim_flux_bound.py [--draws 2000] [--seed 5]

Draws galaxies as the rejection sampler does (``draw_galaxy`` with the sampler's mass floor),
and for every bulge and disc computes the exact r flux (``SEDEngine.photometry``), the tight
bound (``SEDEngine.r_flux_upper_bound``, ``sim/fluxbound.py``) and, per galaxy, the table
bound (``GalaxySimulator.flux_upper_bound``). Prints the smallest bound/exact ratio (must be
>= 1), its quantiles, how many draws each bound leaves for the exact photometry, and the CPU
time of each.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    from galclip import conventions as C
    from galclip.sim.population import draw_galaxy
    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=1))
    eng, limit = sim.engine, float(C.mag_to_nanomaggy(sim.cfg.mag_limit))
    rng = np.random.default_rng(args.seed)
    ratios, rows, cpu = [], [], {"table": 0.0, "tight": 0.0, "exact": 0.0}
    for _ in range(args.draws):
        g = draw_galaxy(rng, sim.logm_min)
        t = time.process_time()
        table = sim.flux_upper_bound(g)
        cpu["table"] += time.process_time() - t
        exact = tight = 0.0
        for pop in (g.bulge, g.disc):
            t = time.process_time()
            b = eng.r_flux_upper_bound(pop, g.redshift)
            t2 = time.process_time()
            e = eng.photometry(pop, g.redshift)["r"]
            cpu["tight"] += t2 - t
            cpu["exact"] += time.process_time() - t2
            ratios.append(b / e)
            exact, tight = exact + e, tight + b
        rows.append((table, tight, exact))
    ratios, rows = np.asarray(ratios), np.asarray(rows)
    q = np.quantile(ratios, [0.0, 0.01, 0.5, 0.99, 1.0])
    print(f"{args.draws} draws, {len(ratios)} populations: tight bound / exact r flux "
          f"min {q[0]:.6f}  1% {q[1]:.4f}  median {q[2]:.4f}  99% {q[3]:.3f}  max {q[4]:.3f}")
    print(f"table bound / exact (per galaxy): median {np.median(rows[:, 0] / rows[:, 2]):.2f}")
    passing = rows[:, 2] > limit
    print(f"draws brighter than the limit: {passing.sum()}; above the limit by the table bound: "
          f"{(rows[:, 0] >= limit).sum()}, by the tight bound too: "
          f"{((rows[:, 0] >= limit) & (rows[:, 1] >= limit)).sum()}")
    print(f"violations (bound < exact): tight {(ratios < 1).sum()}, "
          f"table {(rows[:, 0] < rows[:, 2]).sum()}")
    n_pop = len(ratios)
    print(f"CPU ms per call: table bound {1000 * cpu['table'] / args.draws:.3f} (per galaxy), "
          f"tight bound {1000 * cpu['tight'] / n_pop:.3f}, exact photometry "
          f"{1000 * cpu['exact'] / n_pop:.3f} (per population)")


if __name__ == "__main__":
    main()
