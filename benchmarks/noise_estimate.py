"""How good is the noise estimated for spectra without ivar (galclip.data.noise)?

Two checks of the estimated sigma against a known one:
1. real DESI pipeline coadds in ../shared/data/real/desi (their ivar hidden, then compared):
   per spectrum, the median over good pixels of sigma_est / sigma_pipeline and its 16-84 %
   range over pixels;
2. simulated spectra of a galclip dataset (the simulator's ivar is exactly the variance of the
   noise it added): the same ratio, median over spectra.
Printed for the window of the running median (51, 101 = the default, 201 pixels) of the plain
estimate (``estimate_sigma``), and for what readers use on the galclip grid
(``estimate_grid_ivar``: window 101, shaped by DESI's noise model at the sky lines); the 16-84 %
range over pixels shows how well the estimate follows the noise from pixel to pixel. A second
table looks at the sky-line pixels alone (where DESI's noise model's variance is over 1.5 times
its running median, ~10 % of pixels) against the continuum (under 1.1): there the plain running
median reads the continuum's noise, lower than the pixels' own.

Usage:  python benchmarks/noise_estimate.py [SIMDATA] [--n 50]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "desi"
COADDS = ("coadd-4-80613-thru20210324.fits", "coadd-special-dark-27247.fits",
          "coadd-sv3-dark-26065.fits", "coadd-5-169-thru20210419.fits")
WINDOWS = (51, 101, 201, None)   # None: estimate_grid_ivar (101 + sky-line shape)


def ratios(flux: np.ndarray, ivar: np.ndarray, window: int | None) -> tuple[float, float, float]:
    """Median and 16th/84th percentiles over good pixels of estimated / true sigma; window None:
    the readers' estimate (``estimate_grid_ivar``)."""
    from galclip.data.noise import DESI_SEGMENTS, estimate_grid_ivar, estimate_sigma

    good = ivar > 0
    if window is None:
        est = estimate_grid_ivar(flux, good)
        sigma = np.where(est > 0, 1.0 / np.sqrt(np.where(est > 0, est, 1.0)), np.nan)
    else:
        sigma = estimate_sigma(flux, good, starts=DESI_SEGMENTS, window=window)
    r = sigma[good] * np.sqrt(ivar[good])
    return float(np.median(r)), float(np.percentile(r, 16)), float(np.percentile(r, 84))


def sky_line_ratios(flux: np.ndarray, ivar: np.ndarray) -> tuple[int, float, float, float, float]:
    """(sky-line pixels, median estimated / true sigma there: plain, grid estimate; the same on
    the continuum)."""
    from scipy.ndimage import median_filter

    from galclip.data.noise import (
        DESI_SEGMENTS,
        OBJECT_SMOOTHING,
        WINDOW,
        estimate_grid_ivar,
        estimate_sigma,
        model_variance,
    )

    good = ivar > 0
    v = model_variance(median_filter(np.where(good, flux, 0.0), OBJECT_SMOOTHING, mode="nearest"))
    shape = v / median_filter(v, WINDOW, mode="nearest")
    line, cont = good & (shape > 1.5), good & (shape < 1.1)
    plain = estimate_sigma(flux, good, starts=DESI_SEGMENTS) * np.sqrt(ivar)
    est = estimate_grid_ivar(flux, good)
    grid = np.sqrt(ivar / np.where(est > 0, est, np.nan))
    return (int(line.sum()), float(np.nanmedian(plain[line])), float(np.nanmedian(grid[line])),
            float(np.nanmedian(plain[cont])), float(np.nanmedian(grid[cont])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", help="a simulated galclip dataset")
    ap.add_argument("--n", type=int, default=50, help="simulated spectra to check")
    args = ap.parse_args()
    from galclip.data.desi import read_desi_spectra
    from galclip.data.readers import RejectLog

    spectra = []
    print("| spectra | " + " | ".join(f"window {w}: median (16-84 %)" if w else
                                     "grid estimate (sky-line shape)" for w in WINDOWS) + " |")
    print("|---|" + "---|" * len(WINDOWS))
    for name in COADDS:
        b, _ = read_desi_spectra(REAL / name, rejects=RejectLog(strict=False),
                                 require_redshift=False)
        for tid, f, iv in zip(b.get("object_id", []), b.get("spectrum_flux", []),
                              b.get("spectrum_ivar", []), strict=True):
            cells = [ratios(f, iv, w) for w in WINDOWS]
            spectra.append((f"{name} TARGETID {tid}", sky_line_ratios(f, iv)))
            print(f"| {name} TARGETID {tid} | " + " | ".join(
                f"{m:.3f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in cells) + " |")
    if args.data:
        from galclip.data import open_dataset

        ds = open_dataset(args.data)
        rows = [ds[i] for i in range(min(args.n, len(ds)))]
        cells = [np.median([ratios(r["spectrum_flux"], r["spectrum_ivar"], w) for r in rows],
                           axis=0) for w in WINDOWS]
        print(f"| {len(rows)} simulated ({args.data}), median over spectra | " + " | ".join(
            f"{m:.3f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in cells) + " |")
        spectra.append((f"{len(rows)} simulated, median over spectra", tuple(np.median(
            [sky_line_ratios(r["spectrum_flux"], r["spectrum_ivar"]) for r in rows], axis=0))))
    print("\n| spectra | sky-line pixels | est / true sigma there: plain, grid estimate | "
          "on the continuum: plain, grid |\n|---|---|---|---|")
    for name, (n, a, b, c, d) in spectra:
        print(f"| {name} | {n:.0f} | {a:.2f}, {b:.2f} | {c:.2f}, {d:.2f} |")


if __name__ == "__main__":
    main()
