"""Is the redshift in the simulated spectra? A classical template fit, no machine learning.

Fits each spectrum of a galclip dataset with three bagpipes templates (old, intermediate with
lines, young with lines) plus a quadratic continuum at every trial redshift (0.005 < z < 0.65,
step 0.0005) and takes the chi^2 minimum: the approach of redrock-like pipelines in miniature.
Prints the success rate (|dz|/(1+z) < 0.0033, i.e. 1000 km/s), sigma_NMAD, the outlier fraction
and R^2, overall and for star-forming / quiescent galaxies. This measures what information the
spectra carry, the ceiling a learned encoder should approach.

Usage:  python benchmarks/sim_redshift_check.py DATASET [--n 200]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def templates(zgrid: np.ndarray) -> np.ndarray:
    """(n_z, n_templates, 7781) noiseless template spectra on the DESI grid, unit median."""
    from galclip.sim.sed import Population, SEDEngine, observed_spectrum

    eng = SEDEngine()
    pops = [Population(10.0, 0.5, 10.0, 1.0, 0.1, 200.0),
            Population(5.0, 3.0, 10.0, 0.6, 0.4, 100.0, logu=-3.3, gas_metallicity=0.6),
            Population(1.5, 20.0, 10.0, 0.3, 0.3, 60.0, logu=-2.8, gas_metallicity=0.3)]
    out = np.zeros((len(zgrid), len(pops), 7781), np.float32)
    for j, pop in enumerate(pops):
        eng.synthesize(pop, 0.1)
        m = eng._models[(pop.logu is not None, True)]
        for i, z in enumerate(zgrid):
            s = observed_spectrum(m.wavelengths, m.spectrum_full, z, pop.veldisp)
            out[i, j] = s / np.median(np.abs(s[s != 0])) if np.any(s) else s
    return out


def fit(flux, ivar, tmpl, poly) -> int:
    """Index of the chi^2-best trial redshift (linear least squares at each z)."""
    w = ivar.astype(np.float64)
    A = np.concatenate([tmpl, np.broadcast_to(poly, (tmpl.shape[0], *poly.shape))], axis=1)
    Aw = A * w
    ata = np.einsum("zkn,zln->zkl", Aw, A) + 1e-6 * np.eye(A.shape[1])
    atb = np.einsum("zkn,n->zk", Aw, flux)
    coef = np.linalg.solve(ata, atb[..., None])[..., 0]
    chi2 = np.sum(w * flux**2) - np.einsum("zk,zk->z", coef, atb)
    return int(np.argmin(chi2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    from galclip.data import open_dataset
    from galclip.eval.metrics import r2_score, redshift_metrics

    ds = open_dataset(args.data, columns=["redshift", "spectrum_flux", "spectrum_ivar", "quenched"],
                      verify=False)
    zgrid = np.arange(0.005, 0.65, 0.0005)
    t0 = time.perf_counter()
    tmpl = templates(zgrid)
    x = np.linspace(-1, 1, 7781)
    poly = np.stack([np.ones_like(x), x, x**2]).astype(np.float32)
    zt, zp, q = [], [], []
    for i in range(min(args.n, len(ds))):
        r = ds[i]
        zt.append(r["redshift"])
        zp.append(zgrid[fit(r["spectrum_flux"], r["spectrum_ivar"], tmpl, poly)])
        q.append(r["quenched"])
    zt, zp, q = np.array(zt), np.array(zp), np.array(q, bool)
    print(f"{len(zt)} spectra of {args.data}, template fit in {time.perf_counter() - t0:.0f} s")
    for name, sel in (("all", np.ones_like(q)), ("star-forming", ~q), ("quiescent", q)):
        dz = np.abs(zp[sel] - zt[sel]) / (1 + zt[sel])
        m = redshift_metrics(zt[sel], zp[sel])
        print(f"{name:>13} (n={sel.sum():3d}): success |dz|/(1+z)<0.0033 {np.mean(dz < 0.0033):.3f}  "
              f"R2 {r2_score(zt[sel], zp[sel]):.3f}  sigma_NMAD {m['sigma_nmad']:.4f}  "
              f"eta(0.05) {m['eta_0.05']:.3f}")


if __name__ == "__main__":
    main()
