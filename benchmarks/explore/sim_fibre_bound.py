"""Is the table bound on the Legacy Survey fibre fractions an upper bound, and how tight?

Usage:  python benchmarks/explore/sim_fibre_bound.py [--draws 3000] [--seed 5]

1. Dense scans of GalSim's fraction (``imaging.legacy_fibre_fraction``) along the tables' axes
   between their nodes: the largest rise with radius (bulge, disc) and the largest fall with
   inclination (disc), which the tables assume are zero (``fibrebound.MARGIN`` covers 1 %).
2. Galaxies drawn as the sampler draws them (each programme's proposal, before any cut):
   bound / GalSim fraction per component, without the margin (min must stay >= 1) and with it.
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def scans() -> None:
    from galclip.sim.imaging import bulge_profile, disc_profile, legacy_fibre_fraction

    for n in (1.5, 2.5, 4.0):
        for q, pa in ((1.0, 0.0), (0.45, 30.0)):
            r = np.geomspace(0.15, 20.0, 400)
            f = np.array([legacy_fibre_fraction(bulge_profile(n, x, q, pa)) for x in r])
            print(f"bulge n {n} q {q} pa {pa}: largest rise with radius {np.diff(f).max():+.2e}")
    for incl in (0.0, 60.0, 89.0):
        r = np.geomspace(0.3, 25.0, 400)
        f = np.array([legacy_fibre_fraction(disc_profile(x, incl)) for x in r])
        print(f"disc incl {incl}: largest rise with radius {np.diff(f).max():+.2e}")
    for r in (0.3, 1.0, 5.0, 25.0):
        inc = np.linspace(0.0, 90.0, 400)
        f = np.array([legacy_fibre_fraction(disc_profile(r, i)) for i in inc])
        print(f"disc r_half {r}: largest fall with inclination {np.diff(f).min():+.2e}")
    q = np.linspace(0.45, 1.0, 100)
    f = np.array([legacy_fibre_fraction(bulge_profile(4.0, 0.15, x, 0.0)) for x in q])
    print(f"bulge n 4 r_half 0.15: largest fall with axis ratio {np.diff(f).min():+.2e}")


def draws(n: int, seed: int) -> None:
    from galclip.sim.fibrebound import MARGIN
    from galclip.sim.imaging import legacy_fibre_fractions
    from galclip.sim.population import draw_galaxy
    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=1, programmes="bgs,lrg,elg"))
    rng = np.random.default_rng(seed)
    ratio = {"bulge": [], "disc": []}
    for i in range(n):
        floor, redshifts = sim._plan[sim.programmes[i % len(sim.programmes)].name]
        g = draw_galaxy(rng, lambda z, f=floor: float(np.interp(z, *f)), redshifts)
        exact, bound = legacy_fibre_fractions(g), sim._fibre_bound.fractions(g)
        for c in ratio:
            ratio[c].append(bound[c] / MARGIN / exact[c])
    for c, r in ratio.items():
        r = np.array(r)
        print(f"{c}: {len(r)} draws, table / GalSim min {r.min():.4f}, 1 % {np.quantile(r, 0.01):.4f}, "
              f"median {np.median(r):.4f}, 99 % {np.quantile(r, 0.99):.4f}, max {r.max():.4f}; "
              f"with the margin min {r.min() * MARGIN:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    scans()
    draws(args.draws, args.seed)


if __name__ == "__main__":
    main()
