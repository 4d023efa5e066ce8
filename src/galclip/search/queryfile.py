"""Read a search query given as a file: an image cutout or a spectrum in FITS.

Image: the first HDU holding a (3, H, W) array (Legacy Survey cutout service layout: g, r, z
planes in nanomaggies), H, W >= 152; larger cutouts are centre-cropped to 152 x 152.

Spectrum, any of:
- a DESI coadd (HDUs ``B_WAVELENGTH``/``B_FLUX``/``B_IVAR`` and the same for R and Z; the first
  fibre is used), arms merged inverse-variance weighted onto the galclip grid;
- a binary table with a wavelength column (``wave``/``wavelength``/``lambda``, Angstrom, or
  SDSS ``loglam``), ``flux`` and optionally ``ivar``; resampled onto the grid (linear
  interpolation, ivar = 0 outside the coverage);
- an image HDU with 7781 flux values on the galclip grid, optionally an ``IVAR`` HDU.
Flux in 1e-17 erg/s/cm^2/A (see ``galclip.conventions``).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from galclip import conventions as C


class QueryFileError(ValueError):
    """The query file is not a usable cutout or spectrum; the message says why."""


def _open_fits(source: bytes | str | Path, name: str):
    from astropy.io import fits

    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=False)
            hdul.verify("silentfix")
        return hdul
    except FileNotFoundError:
        raise
    except Exception as e:  # astropy raises many types for a non-FITS file
        raise QueryFileError(f"{name}: not a readable FITS file ({type(e).__name__}: {e})") from e


def read_image_fits(source: bytes | str | Path, name: str = "image file") -> np.ndarray:
    """A (3, 152, 152) float32 g,r,z cutout in nanomaggies from a FITS file."""
    with _open_fits(source, name) as hdul:
        arrays = [h.data for h in hdul if getattr(h, "is_image", False) and h.data is not None]
        cubes = [a for a in arrays if a.ndim == 3 and a.shape[0] == len(C.BANDS)]
        if not cubes:
            shapes = [a.shape for a in arrays]
            raise QueryFileError(f"{name}: no HDU holds a ({len(C.BANDS)}, H, W) g,r,z cutout "
                                 f"(image HDU shapes: {shapes})")
        cube = np.asarray(cubes[0], dtype=np.float32)
    h, w = cube.shape[1:]
    size = C.IMAGE_SIZE
    if h < size or w < size:
        raise QueryFileError(f"{name}: cutout is {h}x{w} pixels; needs at least {size}x{size} "
                             f"at {C.PIXEL_SCALE_ARCSEC} arcsec/pixel")
    y0, x0 = (h - size) // 2, (w - size) // 2
    cube = np.ascontiguousarray(cube[:, y0:y0 + size, x0:x0 + size])
    if not np.isfinite(cube).any():
        raise QueryFileError(f"{name}: cutout has no finite pixel")
    return np.nan_to_num(cube, nan=0.0, posinf=0.0, neginf=0.0)


def read_spectrum_fits(source: bytes | str | Path, name: str = "spectrum file"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(flux, ivar), each (7781,) float32 on the galclip wavelength grid, from a FITS file."""
    with _open_fits(source, name) as hdul:
        names = {h.name.upper() for h in hdul}
        if {"B_FLUX", "R_FLUX", "Z_FLUX"} <= names:
            flux, ivar = _desi_coadd(hdul)
        elif (table := _first_table(hdul)) is not None:
            flux, ivar = _table_spectrum(table, name)
        else:
            flux, ivar = _image_spectrum(hdul, name)
    ivar = np.where(np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
    flux = np.where(ivar > 0, flux, 0.0)
    if not (ivar > 0).any():
        raise QueryFileError(f"{name}: spectrum has no valid pixel in "
                             f"{C.WAVE_MIN:.0f}-{C.wavelength_grid()[-1]:.0f} A")
    return flux.astype(np.float32), ivar.astype(np.float32)


def _resample(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = C.wavelength_grid()
    order = np.argsort(wave)
    wave, flux, ivar = wave[order], flux[order], ivar[order]
    inside = (grid >= wave[0]) & (grid <= wave[-1])
    f = np.where(inside, np.interp(grid, wave, flux), 0.0)
    iv = np.where(inside, np.interp(grid, wave, ivar), 0.0)
    return f, iv


def _desi_coadd(hdul) -> tuple[np.ndarray, np.ndarray]:
    """Merge the B, R, Z arms (same 0.8 A grid, overlapping ends) by inverse-variance weight."""
    grid = C.wavelength_grid()
    num, den = np.zeros(C.N_WAVE), np.zeros(C.N_WAVE)
    for arm in "BRZ":
        wave = np.asarray(hdul[f"{arm}_WAVELENGTH"].data, dtype=np.float64)
        flux = np.atleast_2d(hdul[f"{arm}_FLUX"].data)[0].astype(np.float64)
        ivar = np.atleast_2d(hdul[f"{arm}_IVAR"].data)[0].astype(np.float64)
        idx = np.rint((wave - C.WAVE_MIN) / C.WAVE_STEP).astype(int)
        ok = (idx >= 0) & (idx < C.N_WAVE) & np.isclose(grid[np.clip(idx, 0, C.N_WAVE - 1)], wave,
                                                       atol=0.05)
        ivar = np.where(np.isfinite(ivar) & np.isfinite(flux), ivar, 0.0)
        np.add.at(num, idx[ok], (flux * ivar)[ok])
        np.add.at(den, idx[ok], ivar[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0), den


def _first_table(hdul):
    for h in hdul:
        if h.is_image is False and h.data is not None and len(h.columns.names) > 1:
            return h.data
    return None


def _table_spectrum(data, name: str) -> tuple[np.ndarray, np.ndarray]:
    cols = {c.lower(): c for c in data.columns.names}
    flux_col = cols.get("flux")
    if flux_col is None:
        raise QueryFileError(f"{name}: table has no 'flux' column (columns: {data.columns.names})")
    flux = np.asarray(data[flux_col], dtype=np.float64).reshape(-1)
    ivar = (np.asarray(data[cols["ivar"]], dtype=np.float64).reshape(-1) if "ivar" in cols
            else np.ones_like(flux))
    if "loglam" in cols:
        wave = 10.0 ** np.asarray(data[cols["loglam"]], dtype=np.float64).reshape(-1)
    else:
        key = next((cols[k] for k in ("wave", "wavelength", "lambda") if k in cols), None)
        if key is None:
            raise QueryFileError(f"{name}: table has no wavelength column ('wave', 'wavelength', "
                                 f"'lambda' or 'loglam'; columns: {data.columns.names})")
        wave = np.asarray(data[key], dtype=np.float64).reshape(-1)
    if not (len(wave) == len(flux) == len(ivar)) or len(wave) < 2:
        raise QueryFileError(f"{name}: wavelength, flux and ivar columns differ in length")
    return _resample(wave, flux, ivar)


def _image_spectrum(hdul, name: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = {h.name.upper(): np.asarray(h.data).reshape(-1) for h in hdul
              if getattr(h, "is_image", False) and h.data is not None}
    flux = next((a for k, a in arrays.items() if k != "IVAR" and a.size == C.N_WAVE), None)
    if flux is None:
        raise QueryFileError(f"{name}: found no DESI coadd arms, spectrum table, or {C.N_WAVE}-"
                             f"pixel flux array (image HDU sizes: "
                             f"{ {k: a.size for k, a in arrays.items()} })")
    ivar = arrays.get("IVAR")
    if ivar is None or ivar.size != C.N_WAVE:
        ivar = np.ones(C.N_WAVE)
    return flux.astype(np.float64), ivar.astype(np.float64)
