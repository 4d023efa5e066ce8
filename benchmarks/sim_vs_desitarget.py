"""Simulated colours and sizes against the DESI BGS targets of Legacy Survey DR9.

desitarget ships Gaussian mixtures fitted to real DR9 BGS targets per Tractor morphological
type (``mock/data/dr9/gmm_bgs_{exp,dev,ser}.fits``: r, g - r, r - z, log10 half-light radius, ...).
This samples the mixtures (types weighted equally among the extended ones; PSF-like targets are
left out), keeps r < 19.5, and prints the quartiles of g - r, r - z and the half-light radius
beside those of a simulated dataset. The simulated radius is the light-weighted mean of the
bulge and disc half-light radii (an approximation of Tractor's single-profile ``shape_r``).

Usage:  python benchmarks/sim_vs_desitarget.py DATASET
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np


def sample_gmm(path: Path, n: int, rng: np.random.Generator) -> np.ndarray:
    from astropy.io import fits

    with fits.open(path) as h:
        w, mu, cov = h["WEIGHTS"].data, h["MEANS"].data, h["COVARS"].data
        names = [h[0].header[f"COL{i:02d}"].strip() for i in range(h[0].header["NCOL"])]
    comp = rng.choice(len(w), size=n, p=w / w.sum())
    x = np.array([rng.multivariate_normal(mu[c], cov[c]) for c in comp])
    return {k: x[:, i] for i, k in enumerate(names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    from galclip import conventions as C
    from galclip.data import open_dataset

    spec = importlib.util.find_spec("desitarget")
    if spec is None:
        raise SystemExit("desitarget is not installed (pip install 'galclip[sim]')")
    root = Path(spec.submodule_search_locations[0]) / "mock/data/dr9"
    rng = np.random.default_rng(0)
    parts = [sample_gmm(root / f"gmm_bgs_{t}.fits", args.n // 3, rng) for t in ("exp", "dev", "ser")]
    real = {k: np.concatenate([p[k] for p in parts]) for k in ("r", "gr", "rz", "reff")}
    real["reff"] = 10 ** real["reff"]  # the mixtures model log10 of the radius in arcsec
    keep = real["r"] < 19.5
    ds = open_dataset(args.data, verify=False)
    t = ds.read_columns(["flux_g", "flux_r", "flux_z", "bulge_to_total", "r_half_bulge_arcsec",
                         "r_half_disc_arcsec"])
    mag = {b: C.nanomaggy_to_mag(t[f"flux_{b}"]) for b in "grz"}
    bt = t["bulge_to_total"]
    sim = {"gr": mag["g"] - mag["r"], "rz": mag["r"] - mag["z"],
           "reff": bt * t["r_half_bulge_arcsec"] + (1 - bt) * t["r_half_disc_arcsec"]}
    print(f"DR9 BGS mixtures: {keep.sum()} samples with r < 19.5; simulation: {len(ds)} galaxies")
    print(f"{'quantity':>10} | {'DR9 BGS 25/50/75 %':>22} | {'simulated 25/50/75 %':>22}")
    for k, label in (("gr", "g - r"), ("rz", "r - z"), ("reff", "r_half (\")")):
        a = np.percentile(real[k][keep], [25, 50, 75])
        b = np.percentile(sim[k], [25, 50, 75])
        print(f"{label:>10} | {a[0]:6.2f} {a[1]:6.2f} {a[2]:6.2f}       | "
              f"{b[0]:6.2f} {b[1]:6.2f} {b[2]:6.2f}")


if __name__ == "__main__":
    main()
