"""How good is the noise estimated for spectra without ivar (galclip.data.noise)?

Two checks of the estimated sigma against a known one:
1. real DESI pipeline coadds in ../shared/data/real/desi (their ivar hidden, then compared):
   per spectrum, the median over good pixels of sigma_est / sigma_pipeline and its 16-84 %
   range over pixels;
2. simulated spectra of a galclip dataset (the simulator's ivar is exactly the variance of the
   noise it added): the same ratio, median over spectra.
Also printed for the window of the running median (51, 101 = the default, 201 pixels).

Usage:  python benchmarks/noise_estimate.py [SIMDATA] [--n 50]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "desi"
COADDS = ("coadd-4-80613-thru20210324.fits", "coadd-special-dark-27247.fits",
          "coadd-sv3-dark-26065.fits", "coadd-5-169-thru20210419.fits")
WINDOWS = (51, 101, 201)


def ratios(flux: np.ndarray, ivar: np.ndarray, window: int) -> tuple[float, float, float]:
    """Median and 16th/84th percentiles over good pixels of estimated / true sigma."""
    from galclip.data.noise import DESI_SEGMENTS, estimate_sigma

    good = ivar > 0
    r = estimate_sigma(flux, good, starts=DESI_SEGMENTS, window=window)[good] * np.sqrt(ivar[good])
    return float(np.median(r)), float(np.percentile(r, 16)), float(np.percentile(r, 84))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", help="a simulated galclip dataset")
    ap.add_argument("--n", type=int, default=50, help="simulated spectra to check")
    args = ap.parse_args()
    from galclip.data.desi import read_desi_spectra
    from galclip.data.readers import RejectLog

    print("| spectra | " + " | ".join(f"window {w}: median (16-84 %)" for w in WINDOWS) + " |")
    print("|---|" + "---|" * len(WINDOWS))
    for name in COADDS:
        b, _ = read_desi_spectra(REAL / name, rejects=RejectLog(strict=False),
                                 require_redshift=False)
        for tid, f, iv in zip(b.get("object_id", []), b.get("spectrum_flux", []),
                              b.get("spectrum_ivar", []), strict=True):
            cells = [ratios(f, iv, w) for w in WINDOWS]
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


if __name__ == "__main__":
    main()
