"""Why simulated BGS Faint targets are bluer than DESI's: which of its cuts the red galaxies fail.

Draws galaxies in the BGS Faint proposal (``GalaxySimulator``'s redshift and mass-floor tables
and flux bounds), keeps those with 19.5 <= r < 20.175 (its magnitude range) and reports, for
quenched and star-forming galaxies apart, the share that passes the full BGS Faint selection,
the median r_fib - r (Legacy Survey fibre magnitude against total), the share with r_fib <
20.75 (the first fibre branch) and r_fib < 21.5, the share with a positive "Schlegel colour"
(z - W1) - 1.2 (g - r) + 1.2 (the second branch's condition, Hahn et al. 2023), and the median
g - r, redshift and log stellar mass.

Usage:  python benchmarks/explore/bgs_faint_cuts.py [--n 250] [--seed 8]
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def draw(n: int, seed: int) -> np.ndarray:
    from galclip.sim import targeting as T
    from galclip.sim.imaging import legacy_fibre_fractions
    from galclip.sim.population import draw_galaxy
    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=1, seed=seed, programmes="bgs_faint"))
    sim._fibre_limits = {p: [] for p in sim._fibre_limits}   # flux bounds only: fibre cuts counted here
    rng = np.random.default_rng(seed)
    floor, redshifts = sim._plan["bgs_faint"]
    rows = []
    while len(rows) < n:
        g = draw_galaxy(rng, lambda z: float(np.interp(z, *floor)), redshifts)
        if not sim.may_pass(g, programme="bgs_faint"):
            continue
        phot = {c: sim.engine.photometry(p, g.redshift) for c, p in (("bulge", g.bulge), ("disc", g.disc))}
        total = {b: phot["bulge"][b] + phot["disc"][b] for b in phot["bulge"]}
        f = T.photometry_dict(total, T.fibre_fluxes(phot, legacy_fibre_fractions(g)))
        m = {k: 22.5 - 2.5 * np.log10(v) for k, v in f.items()}
        if not 19.5 <= m["r"] < 20.175:
            continue
        schlegel = (m["z"] - m["w1"]) - 1.2 * (m["g"] - m["r"]) + 1.2
        rows.append((g.quenched, bool(T.bgs_faint(f)[()]), m["rfib"] - m["r"], m["rfib"], schlegel,
                     m["g"] - m["r"], g.redshift, g.logm_target))
    return np.array(rows, dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=250)
    ap.add_argument("--seed", type=int, default=8)
    args = ap.parse_args()
    a = draw(args.n, args.seed)
    print("class | n | pass | rfib - r | rfib < 20.75 | rfib < 21.5 | Schlegel > 0 | g - r | z | log M")
    for q, name in ((1, "quenched"), (0, "star-forming")):
        s = a[:, 0] == q
        print(f"{name} | {s.sum()} | {a[s, 1].mean():.2f} | {np.median(a[s, 2]):.2f} | "
              f"{np.mean(a[s, 3] < 20.75):.2f} | {np.mean(a[s, 3] < 21.5):.2f} | "
              f"{np.mean(a[s, 4] > 0):.2f} | " + " | ".join(f"{np.median(a[s, i]):.2f}" for i in (5, 6, 7)))


if __name__ == "__main__":
    main()
