"""Does the template fit's own confidence sharpen the OOD redshift check?

The check (galclip.search.ood) flags a spectrum whose neighbours' redshift is in tension with a
χ² template fit: t = |ln(1+z_nn) - ln(1+z_t)| / (s_nn + floor). On held-out simulated spectra
the template fit is sometimes itself wrong (low S/N: several χ² minima of similar depth), and
those rows set the 99th percentile the flag is calibrated at, so real spectra read wrong with a
tension of 2-3 stay unflagged. This script computes, for the catalog's held-out (test) rows and
for the real DESI spectra of benchmarks/sim_to_real.py, the neighbours' redshift, the template
fit's redshift and its Δχ² to the best minimum outside |Δln(1+z)| > WINDOW (redrock's
DELTACHI2 idea), and compares flag rules calibrated the same way (the union with the distance
score flags 1 % of held-out rows):

- current: t as above;
- gated:   t where Δχ² > D, else 0 (a template fit that cannot tell its minima apart says nothing);
- scaled:  |Δ| / (s_nn + s_t + floor), s_t the ln(1+z) half-width of {χ² < χ²_min + 9}.

Usage: python benchmarks/explore/ood_template_confidence.py --catalog CAT [--window 0.01]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
WITHIN = 0.01


def fit_stats(fitter, flux, ivar, window: float) -> tuple[float, float, float]:
    """(z_t, Δχ² to the best minimum outside the window, s_t half-width of χ² < min + 9)."""
    c = fitter.chi2(flux, ivar)
    i = int(np.argmin(c))
    lz = np.log1p(fitter.z)
    far = np.abs(lz - lz[i]) > window
    d2 = float(c[far].min() - c[i]) if far.any() else np.inf
    near = lz[c < c[i] + 9.0]
    return float(fitter.z[i]), d2, float(0.5 * (near.max() - near.min()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--window", type=float, default=0.01)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from sim_to_real import REAL, real_spectra

    from galclip.search import ood
    from galclip.search.api import Catalog

    cat = Catalog(args.catalog)
    loaded, pos, vecs, dk = ood._heldout(cat, "spectrum", ood.K_OOD)
    rows = loaded.rows[pos]
    fitter, _ = ood.load_basis(cat)
    flux, ivar = ood.heldout_spectra(cat, rows)
    z_nn, s_nn = ood.neighbour_redshift(cat, "spectrum", vecs, rows)
    z_true = np.asarray(cat.meta["redshift"], np.float64)[rows]
    st = np.array([fit_stats(fitter, f, i, args.window) for f, i in zip(flux, ivar, strict=True)])
    rank_d = np.searchsorted(np.sort(dk), dk, side="left") / len(dk)

    real = real_spectra(REAL)
    rv = np.stack([cat.embed("spectrum", s["flux"], s["ivar"]) for s in real])
    r_dk = ood.kth_distances(cat, "spectrum", rv, ood.K_OOD)
    r_rank_d = np.searchsorted(np.sort(dk), r_dk, side="left") / len(dk)
    r_znn, r_snn = ood.neighbour_redshift(cat, "spectrum", rv)
    r_st = np.array([fit_stats(fitter, s["flux"], s["ivar"], args.window) for s in real])
    r_z = np.array([s["z"] for s in real])
    prog = [s["programme"] for s in real]
    zs = np.asarray(cat.meta["redshift"], np.float64)
    in_range = (r_z > zs.min()) & (r_z < zs.max()) & np.isin(prog, ["BGS", "LRG", "coadd"])
    r_wrong = np.abs(r_znn - r_z) / (1 + r_z) >= WITHIN

    wrong_sim = np.abs(z_nn - z_true) / (1 + z_true) >= WITHIN
    t_bad = np.abs(st[:, 0] - z_true) / (1 + z_true) >= WITHIN
    print(f"held-out {len(rows)}: neighbours wrong {wrong_sim.mean():.1%}, template wrong "
          f"{t_bad.mean():.1%}; Δχ² quartiles template right "
          f"{np.percentile(st[~t_bad, 1], [10, 50, 90]).round(1)}, wrong "
          f"{np.percentile(st[t_bad, 1], [10, 50, 90]).round(1) if t_bad.any() else '-'}")
    print("real: z, z_nn, z_t, Δχ², s_t")
    for s, a, b in zip(real, r_znn, r_st, strict=True):
        print(f"  {s['programme']:5s} {s['z']:.3f} {a:.3f} {b[0]:.3f} {b[1]:9.1f} {b[2]:.4f}")

    def tension(zn, sn, zt, d2, s_t, rule, D):
        dl = np.abs(np.log1p(zn) - np.log1p(zt))
        if rule == "current":
            return dl / (sn + ood.SIGMA_FLOOR)
        if rule == "gated":
            return np.where(d2 > D, dl / (sn + ood.SIGMA_FLOOR), 0.0)
        return dl / (sn + s_t + ood.SIGMA_FLOOR)

    print("| rule | held-out flagged by tension | threshold | real in range flagged | "
          "wrong & unflagged (of wrong) | right but flagged |")
    for rule, D in [("current", 0), ("gated", 9), ("gated", 25), ("gated", 100), ("scaled", 0)]:
        t = np.nan_to_num(tension(z_nn, s_nn, st[:, 0], st[:, 1], st[:, 2], rule, D))
        ts = np.sort(t)
        comb = np.maximum(rank_d, np.searchsorted(ts, t, side="left") / len(t))
        thr = float(np.quantile(comb, 0.99))
        rt = np.nan_to_num(tension(r_znn, r_snn, r_st[:, 0], r_st[:, 1], r_st[:, 2], rule, D))
        rc = np.maximum(r_rank_d, np.searchsorted(ts, rt, side="left") / len(t))
        flag = rc > thr
        m = in_range
        print(f"| {rule} {D} | {np.mean(np.searchsorted(ts, t, side='left') / len(t) > thr):.1%} "
              f"| {thr:.4f} | {flag[m].sum()}/{m.sum()} | {(r_wrong & ~flag)[m].sum()} of "
              f"{r_wrong[m].sum()} | {(~r_wrong & flag)[m].sum()} |")


if __name__ == "__main__":
    main()
