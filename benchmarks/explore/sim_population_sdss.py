"""The simulated bright galaxies against SDSS DR7 at r < 17.6: where do their colours lose z?

Draws ``--n`` BGS Bright targets with an extra r < 17.6 limit (SDSS's spectroscopic limit;
``GalaxySimulator.draw_target``: population, photometry and target selection, no spectra or
images) and compares them with the SDSS DR7 magnitude-limited sample
(``shared/data/real/sdss``) in the SDSS g, r filters:

- R^2 of the k-NN (k = 10, 5-fold) regression of z on (r, g - r), at equal size (the check of
  ``benchmarks/sim_to_real.py``, here on a fresh draw rather than a dataset's test split);
- the density at r < 17.6 (deg^-2; the simulator's acceptance, ``sky_density``) beside SDSS's;
- the redshift quantiles; per redshift bin the count share, the median r, the g - r quartiles,
  the red fraction (g - r above the valley ``red_cut``, which follows the red sequence's
  k-correction) and the red sequence's width (0.741 x the interquartile range of the red);
- per redshift bin the simulated quenched fraction and median log stellar mass.

Usage:  python benchmarks/explore/sim_population_sdss.py [--n 600] [--seed 0]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
SDSS_DRAWS = 20
SDSS_AREA = 91.0 * np.degrees(2 * np.sin(np.radians(2.0)))  # 145-236 deg RA, |Dec| < 2 (deg^2)
BINS = np.array([0.0, 0.04, 0.07, 0.10, 0.13, 0.16, 0.20, 0.30])


def red_cut(z: np.ndarray) -> np.ndarray:
    """The g - r valley between the blue cloud and the red sequence of the SDSS r < 17.6
    sample, moving with the red sequence's k-correction (read off the SDSS sample itself)."""
    return 0.62 + 1.6 * np.asarray(z)


def draw(n: int, seed: int) -> tuple[dict, float]:
    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=1, seed=seed, programmes="bgs_bright", mag_limit=17.6))
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.process_time()
    for _ in range(n):
        t = sim.draw_target(rng)
        tot = {b: t.phot["bulge"][b] + t.phot["disc"][b] for b in ("sdss_g", "sdss_r")}
        rows.append((t.galaxy.redshift, *(22.5 - 2.5 * np.log10(tot[b]) for b in ("sdss_r", "sdss_g")),
                     t.galaxy.quenched, t.galaxy.logm_target))
    a = np.array(rows, dtype=np.float64)
    out = {"z": a[:, 0], "r": a[:, 1], "gr": a[:, 2] - a[:, 1], "q": a[:, 3], "logm": a[:, 4],
           "density": sim.sky_density("bgs_bright")}
    return out, 1000 * (time.process_time() - t0) / n


def knn_r2(z, r, gr, k: int = 10) -> float:
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.column_stack([r, gr])
    zp = cross_val_predict(make_pipeline(StandardScaler(), KNeighborsRegressor(k)), x, z, cv=5)
    return float(1 - np.sum((z - zp) ** 2) / np.sum((z - z.mean()) ** 2))


def table(name: str, d: dict) -> None:
    idx = np.digitize(d["z"], BINS) - 1
    red = d["gr"] > red_cut(d["z"])
    print(f"{name}: n {len(d['z'])}, z 10/50/90 % " + " ".join(
        f"{x:.3f}" for x in np.percentile(d["z"], [10, 50, 90])) + f", red fraction {red.mean():.2f}")
    extra = " | quenched | logM med" if "q" in d else ""
    print("  z bin      | share | r 50 | g-r 25/50/75   | red frac | red g-r sd" + extra)
    for i in range(len(BINS) - 1):
        m = idx == i
        if m.sum() < 3:
            continue
        q = np.percentile(d["gr"][m], [25, 50, 75])
        extra = f" | {d['q'][m].mean():.2f}     | {np.median(d['logm'][m]):.2f}" if "q" in d else ""
        rs = d["gr"][m & red]
        sd = 0.741 * np.subtract(*np.percentile(rs, [75, 25])) if len(rs) > 3 else np.nan
        print(f"  {BINS[i]:.2f}-{BINS[i + 1]:.2f} | {m.mean():.3f} | {np.median(d['r'][m]):.2f} | "
              f"{q[0]:.2f} {q[1]:.2f} {q[2]:.2f} | {red[m].mean():.2f}     | {sd:.3f}{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from galclip.sim.report import SDSS_MAG_LIMIT, load_sdss, real_data_dir

    sim, ms = draw(args.n, args.seed)
    rz, rgr, rr = load_sdss(real_data_dir())
    keep = rr < SDSS_MAG_LIMIT
    real = {"z": rz[keep], "r": rr[keep], "gr": rgr[keep]}
    table("simulation", sim)
    table("SDSS DR7", real)
    print(f"density at r < 17.6 (deg^-2): simulation {sim['density']:.1f}, SDSS DR7 "
          f"{len(real['z']) / SDSS_AREA:.1f} (spectroscopic, before the ~6 % fibre collisions)")
    n, rng = len(sim["z"]), np.random.default_rng(0)
    r2r = []
    for _ in range(SDSS_DRAWS):
        pick = rng.choice(len(real["z"]), n, replace=False)
        r2r.append(knn_r2(real["z"][pick], real["r"][pick], real["gr"][pick]))
    r2s = knn_r2(sim["z"], sim["r"], sim["gr"])
    boot = [knn_r2(*(sim[k][b] for k in ("z", "r", "gr")))
            for b in (rng.integers(0, n, n) for _ in range(10))]
    print(f"k-NN z from (r, g-r), n {n} each: R2 sim {r2s:.3f} (bootstrap sd {np.std(boot):.3f}), "
          f"SDSS {np.mean(r2r):.3f} (sd over {SDSS_DRAWS} subsamples {np.std(r2r):.3f}), "
          f"ratio {r2s / np.mean(r2r):.2f}; {ms:.1f} CPU ms per target (selection only)")


if __name__ == "__main__":
    main()
