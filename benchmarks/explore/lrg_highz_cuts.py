"""Which DESI LRG cut removes the simulated massive quiescent galaxies at 0.8 < z < 1.0?

The simulated LRG target density is 473 deg^-2 against DESI's 605, with only 67 deg^-2 above
z 0.8 (benchmarks/RESULTS.md, "Real LRGs read low"). This draws quenched galaxies of
log M* >= --logm-min at --z-min < z < --z-max from galclip's population (``draw_galaxy``, no
selection), computes their exact photometry and Legacy Survey fibre fluxes as the simulator's
selection does, and reports for each of the LRG cuts (``targeting.lrg``, DR9 south) the fraction
that fails it alone and the fraction that passes all, with the medians of the quantities the
cuts read (z_fib, r - W1, W1, z - W1, r - z), per stellar-mass bin.

Usage: python benchmarks/explore/lrg_highz_cuts.py [--n 300] [--z-min 0.8] [--z-max 1.0]
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def cuts(m: dict) -> dict[str, bool]:
    """The DR9 south LRG cuts of ``targeting.lrg``, one by one, on magnitudes."""
    r_w1 = m["r"] - m["w1"]
    return {"z - W1 > 0.8 (r - z) - 0.6 (stars)": m["z"] - m["w1"] > 0.8 * (m["r"] - m["z"]) - 0.6,
            "z_fib < 21.6": m["zfib"] < 21.6,
            "g - W1 > 2.9 or r - W1 > 1.8": (m["g"] - m["w1"] > 2.9) or (r_w1 > 1.8),
            "sliding r - W1 cut": bool(((r_w1 > (m["w1"] - 17.14) * 1.8) & (r_w1 > m["w1"] - 16.33))
                                       | (r_w1 > 3.3)),
            "z_fibtot > 17.5": m["zfibtot"] > 17.5}


def r_half(g) -> float:
    """A half-light radius proxy (arcsec): the bulge's and the disc's half-light radii weighted
    by their stellar mass shares."""
    bt = g.bulge_to_total_mass
    return float(bt * g.r_half_bulge + (1 - bt) * g.r_half_disc)


def main() -> None:
    from galclip.sim import targeting as T
    from galclip.sim.imaging import legacy_fibre_fractions
    from galclip.sim.population import draw_galaxy
    from galclip.sim.survey import GalaxySimulator, SimConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--z-min", type=float, default=0.8)
    ap.add_argument("--z-max", type=float, default=1.0)
    ap.add_argument("--logm-min", type=float, default=10.8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sim = GalaxySimulator(SimConfig(n=1, seed=args.seed, programmes="lrg"))
    rng = np.random.default_rng(args.seed)
    rows = []
    while len(rows) < args.n:
        z = float(rng.uniform(args.z_min, args.z_max))
        g = draw_galaxy(rng, lambda _z: args.logm_min, (np.array([0.0, 1.0]), np.array([z, z])))
        if not g.quenched:
            continue
        phot = {"bulge": sim.engine.photometry(g.bulge, g.redshift),
                "disc": sim.engine.photometry(g.disc, g.redshift)}
        total = {b: phot["bulge"][b] + phot["disc"][b] for b in phot["bulge"]}
        f = T.photometry_dict(total, T.fibre_fluxes(phot, legacy_fibre_fractions(g)))
        m = {k: float(T._mag(v)) for k, v in f.items()}
        rows.append((g, m, cuts(m)))
    names = list(rows[0][2])
    print(f"quenched galaxies at {args.z_min} < z < {args.z_max}, log M* >= {args.logm_min}: "
          f"n {len(rows)}")
    for lo, hi in ((args.logm_min, 11.0), (11.0, 11.3), (11.3, 12.5)):
        sel = [r for r in rows if lo <= r[0].logm_target < hi]
        if not sel:
            continue
        passed = np.mean([all(c.values()) for _, _, c in sel])
        fails = {n: np.mean([not c[n] for _, _, c in sel]) for n in names}
        med = {k: np.median([m[k] for _, m, _ in sel]) for k in ("zfib", "w1", "r", "z")}
        rw1 = np.median([m["r"] - m["w1"] for _, m, _ in sel])
        rz = np.median([m["r"] - m["z"] for _, m, _ in sel])
        zw1 = np.median([m["z"] - m["w1"] for _, m, _ in sel])
        print(f"log M* {lo:.1f}-{hi:.1f}: n {len(sel)}, pass all {passed:.2f}; fail "
              + ", ".join(f"{n} {v:.2f}" for n, v in fails.items()))
        half = np.median([r_half(g) for g, _, _ in sel])
        print(f"    medians: z_fib {med['zfib']:.2f} (total z {med['z']:.2f}: fibre holds "
              f"{10 ** (-0.4 * (med['zfib'] - med['z'])):.2f}), half-light radius {half:.2f}\", "
              f"W1 {med['w1']:.2f}, r - W1 {rw1:.2f}, r - z {rz:.2f}, z - W1 {zw1:.2f}")


if __name__ == "__main__":
    main()
