"""Is the redshift in the simulated spectra? A classical template fit, no machine learning.

Fits each spectrum of a galclip dataset with ``galclip.eval.template_fit`` (three bagpipes
templates — old, intermediate with lines, young with lines — plus a quadratic continuum, χ² over
a 0.0005 grid on 0.005 < z < 0.65 refined to 0.0001 around the minimum): the approach of
redrock-like pipelines in miniature, and the reference row the evaluation report shows on
simulated data. Prints the time taken, the success rate (|dz|/(1+z) < 0.0033, i.e. 1000 km/s),
sigma_NMAD, the outlier fraction and R^2, overall and for star-forming / quiescent galaxies.
This measures what information the spectra carry, the ceiling a learned encoder should approach.

Usage:  python benchmarks/sim_redshift_check.py DATASET [--n 200]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    from galclip.data import open_dataset
    from galclip.eval.metrics import r2_score, redshift_metrics
    from galclip.eval.template_fit import TemplateFitter

    ds = open_dataset(args.data, columns=["redshift", "spectrum_flux", "spectrum_ivar", "quenched"],
                      verify=False)
    t0 = time.perf_counter()
    fitter = TemplateFitter()
    t_init = time.perf_counter() - t0
    zt, zp, q = [], [], []
    for i in range(min(args.n, len(ds))):
        r = ds[i]
        zt.append(r["redshift"])
        zp.append(fitter.redshift(r["spectrum_flux"], r["spectrum_ivar"]))
        q.append(r["quenched"])
    zt, zp, q = np.array(zt), np.array(zp), np.array(q, bool)
    print(f"{len(zt)} spectra of {args.data}, template fit in {time.perf_counter() - t0:.1f} s "
          f"(of which {t_init:.1f} s building the templates; the first spectrum also builds the "
          f"coarse grid)")
    for name, sel in (("all", np.ones_like(q)), ("star-forming", ~q), ("quiescent", q)):
        if not sel.any():
            continue
        dz = np.abs(zp[sel] - zt[sel]) / (1 + zt[sel])
        m = redshift_metrics(zt[sel], zp[sel])
        print(f"{name:>13} (n={sel.sum():3d}): success |dz|/(1+z)<0.0033 {np.mean(dz < 0.0033):.3f}  "
              f"R2 {r2_score(zt[sel], zp[sel]):.3f}  sigma_NMAD {m['sigma_nmad']:.4f}  "
              f"eta(0.05) {m['eta_0.05']:.3f}")


if __name__ == "__main__":
    main()
