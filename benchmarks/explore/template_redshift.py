"""Control for the sim-to-real gap: a chi^2 template redshift fit, built unlike the learned model.

Does the data allow a redshift for the real DESI spectra at all, with galclip's own SED model?
Templates: rest-frame bagpipes spectra (BC03-MILES + Cloudy nebular, ``galclip.sim.sed``) of
galaxies drawn by galclip's simulator for its programmes (bulge + disc, each broadened by its own
velocity dispersion), on a rest log-wavelength grid; their first ``--k`` principal components
(an uncentred SVD of the unit-mean templates) are the basis, as redrock's galaxy templates are
a PCA basis (Bolton et al. 2012, AJ 144, 144; redrock, DESI). For every trial redshift on a grid
uniform in ln(1 + z), the basis is evaluated at the observed vacuum wavelengths / (1 + z) and the
spectrum fitted by weighted linear least squares with the file's ivar (the Andes tables: the
DER_SNR estimate, ``galclip.data.noise``); optionally ``--poly`` Legendre terms absorb a smooth
calibration error. z = the grid point of least chi^2.

Reports per real sample how many are within 0.01 (1 + z), and the same on simulated held-out
spectra (a check that the fit works on data it was built for).

Usage: python benchmarks/explore/template_redshift.py --data SIMDATA [--n-templates 120] [--k 10]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sim_to_real import REAL, real_spectra  # noqa: E402

from galclip import conventions as C  # noqa: E402

DLNW = 1e-4   # galclip.search.redshift_templates.DLN
Z_MIN, Z_MAX, DLNZ = 0.003, 1.25, 3e-4


def templates(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest grid, (n, G) unit-mean spectra) of galaxies the simulator draws for its programmes."""
    from galclip.eval.template_fit import rest_grid, simulated_templates

    return rest_grid(), simulated_templates(n, seed)


def basis(temps: np.ndarray, k: int) -> np.ndarray:
    _, _, vt = np.linalg.svd(temps, full_matrices=False)
    return vt[:k]


def fit_redshift(flux, ivar, grid, B, poly: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
    """(best z, z grid, chi^2 per z) of one spectrum on the galclip grid."""
    from numpy.polynomial import legendre

    wave = C.wavelength_grid()
    good = (ivar > 0) & np.isfinite(flux) & np.isfinite(ivar)
    w, f, iv = wave[good], flux[good].astype(np.float64), ivar[good].astype(np.float64)
    x = np.linspace(-1, 1, C.N_WAVE)[good]
    P = np.stack([legendre.legval(x, np.eye(poly + 1)[j]) for j in range(1, poly + 1)], 1) \
        if poly else np.zeros((len(w), 0))
    zs = np.exp(np.arange(np.log1p(Z_MIN), np.log1p(Z_MAX), DLNZ)) - 1
    chi2 = np.full(len(zs), np.inf)
    lg0 = np.log(grid[0])
    for j, z in enumerate(zs):
        pos = (np.log(w / (1 + z)) - lg0) / DLNW
        i0 = np.clip(pos.astype(int), 0, len(grid) - 2)
        t = pos - i0
        A = np.concatenate([(B[:, i0] * (1 - t) + B[:, i0 + 1] * t).T, P], 1)
        Aw = A * iv[:, None]
        M, b = A.T @ Aw, Aw.T @ f
        try:
            c = np.linalg.solve(M, b)
        except np.linalg.LinAlgError:
            continue
        chi2[j] = f @ (f * iv) - b @ c
    return float(zs[np.argmin(chi2)]), zs, chi2


def sim_heldout(data: str, n: int) -> list[dict]:
    from galclip.data import open_dataset
    from galclip.data.splits import split_indices

    ds = open_dataset(data)
    ids = ds.read_columns(["object_id"])["object_id"]
    out = []
    for i in split_indices(ids, "test")[:n]:
        r = ds[int(i)]
        out.append({"programme": "sim " + str(r["programme"]), "z": float(r["redshift"]),
                    "flux": r["spectrum_flux"], "ivar": r["spectrum_ivar"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a simulated dataset: also fit its test-split spectra")
    ap.add_argument("--n-sim", type=int, default=60)
    ap.add_argument("--n-templates", type=int, default=120)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--poly", type=int, default=0)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--real", default=str(REAL))
    args = ap.parse_args()
    t0 = time.time()
    grid, temps = templates(args.n_templates, args.seed)
    B = basis(temps, args.k)
    print(f"{args.n_templates} templates, {args.k} components, poly {args.poly} "
          f"({time.time() - t0:.0f} s)")
    spectra = real_spectra(Path(args.real))
    for s in spectra:
        s["programme"] = s["programme"] if s["programme"] != "coadd" else "pipeline coadds"
    if args.data:
        spectra += sim_heldout(args.data, args.n_sim)
    for s in spectra:
        s["z_fit"] = fit_redshift(s["flux"], s["ivar"], grid, B, args.poly)[0]
        s["dz"] = abs(s["z_fit"] - s["z"]) / (1 + s["z"])
        print(f"  {s['programme']:8s} z {s['z']:.4f} fit {s['z_fit']:.4f} dz {s['dz']:.4f}")
    print("| sample | n | within 0.01(1+z) | in 0.01<z<1.2: n, within |\n|---|---|---|---|")
    for p in dict.fromkeys(s["programme"] for s in spectra):
        sel = [s for s in spectra if s["programme"] == p]
        ins = [s for s in sel if 0.01 < s["z"] < 1.2]
        print(f"| {p} | {len(sel)} | {sum(s['dz'] < 0.01 for s in sel)} | "
              f"{len(ins)}, {sum(s['dz'] < 0.01 for s in ins)} |")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
