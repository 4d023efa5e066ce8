"""Do smoothed spectra (like the DESI "Andes" student tables) break the spectrum encoder, and
does restoring the missing high-frequency noise repair them?

Control on simulated spectra only (no real spectrum is used to choose anything): ``--n``
val-split spectra of a simulated dataset are read (redshift = median of the k nearest catalog
spectra, own row left out) (a) as simulated, (b) Gaussian-smoothed by ``--sigma-pix`` pixels
with the ivar estimated from the flux (``data.noise``, as for a file without ivar), (c) the same
re-whitened (``rewhiten`` below: noise with the power the smoothing removed
is added back, so the noise spectrum is white again at the estimated level). Then the real DESI
spectra of benchmarks/sim_to_real.py (BGS, LRG, pipeline coadds in the simulated range) read as
they are and re-whitened.

Usage: python benchmarks/explore/smoothed_spectra.py --catalog CAT --data DATA [--n 300]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _kernel(sigma_pix: float) -> np.ndarray:
    half = int(np.ceil(5 * sigma_pix)) + 1
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_pix) ** 2)
    return k / k.sum()


def _correlation_factor_of(sigma_pix: float, block: int = 8) -> float:
    """The ``data.noise.correlation_factor`` that white noise smoothed by a Gaussian of ``sigma_pix``
    pixels has, exactly: both DER_SNR statistics are linear filters of the noise, so their
    variances are the squared norms of those filters convolved with the kernel."""
    k = _kernel(sigma_pix)
    pixel = np.convolve(k, [-1.0, 0.0, 2.0, 0.0, -1.0])
    box = np.ones(block) / block
    blocks = np.zeros(5 * block)
    for w, at in ((-1.0, 0), (2.0, 2 * block), (-1.0, 4 * block)):
        blocks[at:at + block] += w * box
    blocked = np.convolve(k, blocks)
    return float(np.sqrt(block * np.sum(blocked**2) / np.sum(pixel**2)))


def smoothing_sigma(factor: float) -> float:
    """The width (pixels) of the Gaussian smoothing that gives white noise the correlation
    ``factor`` (``data.noise.correlation_factor``); 0 for a factor <= 1."""
    grid = np.geomspace(0.2, 12.0, 200)
    q = np.array([_correlation_factor_of(s) for s in grid])   # rises monotonically with sigma
    return 0.0 if factor <= 1.0 else float(np.interp(factor, q, grid))


def rewhiten(flux: np.ndarray, good: np.ndarray | None = None, *, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    """(flux, estimated ivar) of a spectrum on the galclip grid, with the pixel-scale noise that
    a publisher's smoothing removed put back.

    A model trained on spectra with white noise reads a smoothed one (noise correlated over a
    few pixels: ``data.noise.correlation_factor`` > ``CORRELATED``) as a spectrum whose pixels
    scatter far less than its ivar says, a kind of spectrum it has never seen. The smoothing is
    taken to be Gaussian, its width from the correlation factor (``smoothing_sigma``); the
    noise left in the spectrum then has the power spectrum sigma^2 |K(f)|^2, and adding
    seeded Gaussian noise filtered to sigma^2 (1 - |K(f)|^2), with sigma the white-noise level
    ``data.noise`` estimates pixel by pixel, makes it white again at that level: the
    spectrum looks as the instrument recorded it, with its signal still smoothed (a slightly
    lower resolution). A spectrum without correlated noise is returned unchanged.
    """
    from galclip.data.noise import CORRELATED, DESI_SEGMENTS, correlation_factor, estimate_grid_ivar

    flux = np.asarray(flux, np.float64)
    good = np.isfinite(flux) if good is None else (np.asarray(good, bool) & np.isfinite(flux))
    ivar = estimate_grid_ivar(flux, good)
    factor = correlation_factor(flux, good, starts=DESI_SEGMENTS)
    if factor <= CORRELATED:
        return flux, ivar
    n = len(flux)
    k = _kernel(smoothing_sigma(factor))
    size = int(2 ** np.ceil(np.log2(n + len(k))))
    gain = np.abs(np.fft.rfft(k, size)) ** 2                      # |K(f)|^2 on the rfft grid
    white = np.random.default_rng(seed).normal(size=size)
    extra = np.fft.irfft(np.fft.rfft(white) * np.sqrt(np.clip(1.0 - gain, 0, None)), size)[:n]
    ok = good & (ivar > 0)
    sigma = np.where(ok, 1.0 / np.sqrt(np.where(ok, ivar, 1.0)), 0.0)
    return np.where(ok, flux + sigma * extra, flux), ivar


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--sigma-pix", type=float, default=2.5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from scipy.ndimage import gaussian_filter1d
    from sim_to_real import REAL, real_spectra

    from galclip.data import open_dataset
    from galclip.data.noise import estimate_grid_ivar
    from galclip.data.splits import split_indices
    from galclip.search.api import Catalog

    cat = Catalog(args.catalog)
    ds = open_dataset(args.data)
    ids = ds.read_columns(["object_id"])["object_id"]
    val = split_indices(ids, "val")[: args.n]

    def read(f, iv, own=None) -> float:
        res = cat.search(spectrum=(np.asarray(f, np.float32), np.asarray(iv, np.float32)),
                         k=args.k + 1)
        z = [n["redshift"] for n in res.neighbours if n["object_id"] != own][: args.k]
        return float(np.median(z))

    ok = {"as simulated": [], "smoothed, ivar estimated": [], "smoothed, re-whitened": []}
    for i in val:
        r = ds[int(i)]
        f, iv, z, own = r["spectrum_flux"], r["spectrum_ivar"], float(r["redshift"]), r["object_id"]
        good = iv > 0
        fs = np.where(good, gaussian_filter1d(np.where(good, f, 0.0), args.sigma_pix), 0.0)
        ivs = estimate_grid_ivar(fs, good)
        fw, ivw = rewhiten(fs, good, seed=int(own))
        for name, (a, b) in zip(ok, [(f, iv), (fs, ivs), (fw, ivw)], strict=True):
            ok[name].append(abs(read(a, b, own) - z) / (1 + z) < 0.01)
    print(f"{len(val)} simulated val spectra, k = {args.k}, smoothing sigma {args.sigma_pix} px:")
    for name, v in ok.items():
        print(f"  {name}: {np.mean(v):.1%} within 0.01(1+z)")
    zs = np.asarray(cat.meta["redshift"])
    print("real (programme, z, as read, re-whitened):")
    n_ok = [0, 0]
    for s in real_spectra(REAL):
        if s["programme"] not in ("BGS", "LRG", "coadd") or not zs.min() < s["z"] < zs.max():
            continue
        f = np.asarray(s["flux"], np.float64)
        good = np.asarray(s["ivar"]) > 0
        z0 = read(f, s["ivar"])
        fw, ivw = rewhiten(f, good, seed=int(s["targetid"])) if s["ivar_estimated"] else (f, s["ivar"])
        z1 = read(fw, ivw)
        n_ok[0] += abs(z0 - s["z"]) / (1 + s["z"]) < 0.01
        n_ok[1] += abs(z1 - s["z"]) / (1 + s["z"]) < 0.01
        print(f"  {s['programme']:5s} {s['z']:.3f} {z0:.3f} {z1:.3f}")
    print(f"real within 0.01(1+z): as read {n_ok[0]}, re-whitened {n_ok[1]}")


if __name__ == "__main__":
    main()
