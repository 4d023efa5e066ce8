"""Read a search query given as a file: an image cutout or a spectrum in FITS.

Image: the first HDU holding a (bands, H, W) cube in nanomaggies, H, W >= 152 (larger
cutouts are centre-cropped to 152 x 152). Bands are taken from the header (``BAND0..`` or
``BANDS``, as the Legacy Survey cutout service writes them) and reordered to g, r, z; a cube of
exactly 3 planes without band keywords is read as g, r, z.

Spectrum, any of:
- a DESI coadd or spectra file (HDUs ``B_WAVELENGTH``/``B_FLUX``/``B_IVAR`` [``B_MASK``] and the
  same for R and Z), arms merged inverse-variance weighted onto the galclip grid by
  ``galclip.data.desi.merge_arms``. A file holding several fibres needs ``targetid`` (matched
  against the ``FIBERMAP`` HDU) or ``row``; without either the error lists the TARGETIDs
  (``list_targets`` gives them as data);
- a binary table with a wavelength column (``wave``/``wavelength``/``lambda``, Angstrom, or
  SDSS ``loglam``), ``flux`` and optionally ``ivar``; resampled onto the grid conserving flux
  (``resample_spectrum``: SpectRes, Carnall 2017, arXiv:1705.05165, with the errors propagated),
  ivar = 0 outside the coverage;
- a DESI flux table without errors (a ``WAVELENGTH`` column and one ``TARGET<TARGETID>``
  column per fibre, as DESIHIGH's Andes files; ``galclip.data.desi_tables``), a fibre picked
  as in a coadd;
- an image HDU with 7781 flux values on the galclip grid, optionally an ``IVAR`` HDU.
Flux in 1e-17 erg/s/cm^2/A (see ``galclip.conventions``).

A spectrum without an inverse variance (a DESI file without ``{ARM}_IVAR`` HDUs, a flux table,
a table without ``ivar``, a flux array without ``IVAR``) gets one estimated from its own flux
(``galclip.data.noise``: a local DER_SNR on the file's own pixels, before resampling), never a
constant: the result's
``ivar_estimated`` is then True, searches report it in ``query.ivar_estimated``, and
:func:`read_spectrum_fits` warns (:class:`IvarEstimatedWarning`).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from galclip import conventions as C


class QueryFileError(ValueError):
    """The query file is not a usable cutout or spectrum; the message says why."""


class IvarEstimatedWarning(UserWarning):
    """A spectrum came without an inverse variance; the one returned is estimated."""


class SpectrumArrays(tuple):
    """``(flux, ivar)`` as a plain 2-tuple, plus ``ivar_estimated``: True when the file had no
    inverse variance and ``ivar`` was estimated from the flux (``galclip.data.noise``)."""

    def __new__(cls, flux: np.ndarray, ivar: np.ndarray, ivar_estimated: bool = False):
        self = super().__new__(cls, (flux, ivar))
        self.ivar_estimated = bool(ivar_estimated)
        return self

    def __reduce__(self):
        return SpectrumArrays, (self[0], self[1], self.ivar_estimated)


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
    from galclip.data.readers import fit_image_size

    with _open_fits(source, name) as hdul:
        hdus = [h for h in hdul if getattr(h, "is_image", False) and h.data is not None]
        cubes = [h for h in hdus if h.data.ndim == 3]
        if not cubes:
            raise QueryFileError(f"{name}: no HDU holds a (bands, H, W) g,r,z cutout (image HDU "
                                 f"shapes: {[h.data.shape for h in hdus]})")
        cube = _grz(np.asarray(cubes[0].data, dtype=np.float32), cubes[0].header, name)
    h, w = cube.shape[1:]
    size = C.IMAGE_SIZE
    if h < size or w < size:
        raise QueryFileError(f"{name}: cutout is {h}x{w} pixels; needs at least {size}x{size} "
                             f"at {C.PIXEL_SCALE_ARCSEC} arcsec/pixel")
    if not np.isfinite(cube).any():
        raise QueryFileError(f"{name}: cutout has no finite pixel")
    cube = np.nan_to_num(cube, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(fit_image_size(cube, size)[0])


def _grz(cube: np.ndarray, header, name: str) -> np.ndarray:
    """The g, r, z planes of a cube, by the header's band names when it has them."""
    from galclip.data.legacysurvey import header_bands
    from galclip.data.readers import ReaderError, select_bands

    try:
        names = header_bands(name, header, cube.shape[0])
    except ReaderError:
        if cube.shape[0] != len(C.BANDS):
            raise QueryFileError(f"{name}: a {cube.shape[0]}-plane cube without BAND0../BANDS "
                                 f"header keywords; expected 3 planes g, r, z") from None
        return cube
    return select_bands(name, "header BANDS", names, cube)


def read_spectrum_fits(source: bytes | str | Path, name: str = "spectrum file", *,
                       targetid: int | None = None, row: int | None = None) -> SpectrumArrays:
    """(flux, ivar), each (7781,) float32 on the galclip wavelength grid, from a FITS file.

    ``targetid`` or ``row`` picks one fibre of a multi-fibre DESI coadd/spectra file or flux
    table. The result's ``ivar_estimated`` says whether the ivar was estimated (the file had
    none); then an :class:`IvarEstimatedWarning` is issued too.
    """
    with _open_fits(source, name) as hdul:
        estimated = False
        if _is_desi(hdul):
            i = _fibre(_targets(hdul), name, targetid, row)
            flux, ivar = _desi_coadd(hdul, name, i)
            estimated = not _has_ivar(hdul)
            name = f"{name} row {i} (TARGETID {_targets(hdul)[i]['targetid']})"
        elif (table := _flux_table(hdul)) is not None:
            flux, ivar, name = _flux_table_spectrum(table, name, targetid, row)
            estimated = True
        elif targetid is not None or row is not None:
            raise QueryFileError(f"{name}: targetid/row select a fibre of a DESI coadd, spectra "
                                 f"file or flux table; this file has no B_FLUX/R_FLUX/Z_FLUX HDUs "
                                 f"and no TARGET<TARGETID> columns")
        elif (table := _first_table(hdul)) is not None:
            flux, ivar, estimated = _table_spectrum(table, name)
        else:
            flux, ivar, estimated = _image_spectrum(hdul, name)
    ivar = np.where(np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
    flux = np.where(ivar > 0, flux, 0.0)
    if not (ivar > 0).any():
        raise QueryFileError(f"{name}: spectrum has no valid pixel in "
                             f"{C.WAVE_MIN:.0f}-{C.wavelength_grid()[-1]:.0f} A")
    if estimated:
        warnings.warn(f"{name}: no inverse variance in the file; the noise is estimated from the "
                      f"flux (galclip.data.noise)", IvarEstimatedWarning, stacklevel=2)
    return SpectrumArrays(flux.astype(np.float32), ivar.astype(np.float32), estimated)


def resample_spectrum(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Flux density on any wavelength grid -> (flux, ivar) on the galclip grid, flux-conserving.

    Each output pixel is the overlap-weighted mean of the good (ivar > 0) input pixels it covers
    and its error the propagated one (SpectRes, Carnall 2017); ivar = 0 where no good input
    pixel overlaps. (Upsampling a coarser spectrum gives correlated pixels, each with the
    error of the input pixel it lies in.)
    """
    from spectres import spectres

    grid = C.wavelength_grid()
    order = np.argsort(wave)
    wave, flux, ivar = wave[order], flux[order], ivar[order]
    good = (np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)).astype(np.float64)
    sigma = np.where(good > 0, 1.0 / np.sqrt(np.where(good > 0, ivar, 1.0)), 0.0)
    fg, eg = spectres(grid, wave, np.where(good > 0, flux, 0.0), spec_errs=sigma, fill=0.0,
                      verbose=False)
    cover = spectres(grid, wave, good, fill=0.0, verbose=False)  # good fraction of each pixel
    ok = cover > 1e-6
    out_flux = np.where(ok, fg / np.where(ok, cover, 1.0), 0.0)
    out_sigma = np.where(ok, eg / np.where(ok, cover, 1.0), 0.0)
    out_ivar = np.where(ok & (out_sigma > 0), 1.0 / np.where(out_sigma > 0, out_sigma, 1.0) ** 2, 0.0)
    return out_flux, out_ivar


# ----------------------------------------------------------------------------- DESI fibres
def _is_desi(hdul) -> bool:
    return {"B_FLUX", "R_FLUX", "Z_FLUX"} <= {h.name.upper() for h in hdul}


def list_targets(source: bytes | str | Path, name: str = "spectrum file") -> list[dict]:
    """The fibres of a DESI coadd/spectra file: row, TARGETID, OBJTYPE, RA, Dec, good pixels.

    A single-spectrum file of another kind gives one entry with only ``row``.
    """
    with _open_fits(source, name) as hdul:
        if _is_desi(hdul):
            return _targets(hdul)
        if (table := _flux_table(hdul)) is not None:
            return _table_targets(table)
        return [{"row": 0, "targetid": None, "objtype": None, "ra": None, "dec": None,
                 "n_good": None}]


def _targets(hdul) -> list[dict]:
    n = np.atleast_2d(hdul["B_FLUX"].data).shape[0]
    fm = hdul["FIBERMAP"].data if "FIBERMAP" in hdul else None
    cols = set(fm.columns.names) if fm is not None else set()

    def col(c, i):
        return _scalar(fm[c][i]) if c in cols and i < len(fm) else None

    n_good = sum(_good(hdul, a).sum(axis=1) for a in "BRZ")  # (N,)
    return [{"row": i, "targetid": col("TARGETID", i), "objtype": col("OBJTYPE", i),
             "ra": col("TARGET_RA", i), "dec": col("TARGET_DEC", i), "n_good": int(n_good[i])}
            for i in range(n)]


def _has_ivar(hdul) -> bool:
    return any(f"{a}_IVAR" in hdul for a in "BRZ")


def _good(hdul, arm: str) -> np.ndarray:
    """(N, P) pixels of an arm with a measurement: ivar > 0, or (no IVAR HDUs) finite flux."""
    if _has_ivar(hdul):
        return np.atleast_2d(hdul[f"{arm}_IVAR"].data) > 0
    good = np.isfinite(np.atleast_2d(hdul[f"{arm}_FLUX"].data))
    if f"{arm}_MASK" in hdul:
        good &= np.atleast_2d(hdul[f"{arm}_MASK"].data) == 0
    return good


def _scalar(v):
    v = v.item() if isinstance(v, np.generic) else v
    return v.strip() if isinstance(v, str) else v


def _fibre(targets: list[dict], name: str, targetid: int | None, row: int | None) -> int:
    """The row of the fibre to read: by TARGETID, by row, or the only one."""
    if targetid is not None and row is not None:
        raise QueryFileError(f"{name}: give targetid or row, not both")
    if targetid is not None:
        match = [t["row"] for t in targets if t["targetid"] == int(targetid)]
        if not match:
            where = "flux table's TARGET<TARGETID> columns" if targets[0].get("column") else "FIBERMAP"
            raise QueryFileError(f"{name}: TARGETID {targetid} is not in the {where}; "
                                 f"{_target_list(targets)}")
        return match[0]
    if row is not None:
        if not 0 <= int(row) < len(targets):
            raise QueryFileError(f"{name}: row {row} out of range: the file holds "
                                 f"{len(targets)} spectra (rows 0-{len(targets) - 1})")
        return int(row)
    if len(targets) > 1:
        raise QueryFileError(f"{name}: holds {len(targets)} spectra; pick one with --targetid "
                             f"or --row. {_target_list(targets)}")
    return 0


def _target_list(targets: list[dict]) -> str:
    lines = [f"row {t['row']}: TARGETID {t['targetid']} {t['objtype'] or ''} "
             f"({t['n_good']} good pixels)".replace("  ", " ") for t in targets[:50]]
    more = f"; ... {len(targets) - 50} more" if len(targets) > 50 else ""
    return "available: " + "; ".join(lines) + more


def _desi_coadd(hdul, name: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge the B, R, Z arms of fibre row ``i`` (MASK != 0 -> bad) onto the galclip grid."""
    from galclip.data.desi import arm_pixels, merge_arms

    arms = []
    for arm in "BRZ":
        wave = np.asarray(hdul[f"{arm}_WAVELENGTH"].data, dtype=np.float64)
        flux = np.atleast_2d(hdul[f"{arm}_FLUX"].data)[i:i + 1].astype(np.float64)  # (1, P)
        mask = (np.atleast_2d(hdul[f"{arm}_MASK"].data)[i:i + 1] if f"{arm}_MASK" in hdul
                else np.zeros(flux.shape, np.int64))
        if _has_ivar(hdul):
            ivar = np.atleast_2d(hdul[f"{arm}_IVAR"].data)[i:i + 1].astype(np.float64)
        else:   # no IVAR HDUs: estimated from the flux, arm by arm
            from galclip.data.desi import estimate_arm_ivar

            ivar = estimate_arm_ivar(np.where(np.isfinite(flux), flux, np.nan), mask)
        good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & (mask == 0)
        arms.append((arm_pixels(name, arm, wave), flux, ivar, good))
    flux, ivar = merge_arms(arms)
    return flux[0], ivar[0]


# ----------------------------------------------------------------------------- flux tables
def _flux_table(hdul):
    from galclip.data.desi_tables import flux_table

    return flux_table(hdul)


def _table_targets(table) -> list[dict]:
    from galclip.data.desi_tables import table_targets

    return [{"row": i, "targetid": t, "column": c, "objtype": None, "ra": None, "dec": None,
             "n_good": int(np.isfinite(np.asarray(table.data[c], np.float64)).sum())}
            for i, (t, c) in enumerate(table_targets(table).items())]


def _flux_table_spectrum(table, name: str, targetid: int | None, row: int | None):
    """(flux, estimated ivar, label) of one fibre of a DESI flux table."""
    from galclip.data.desi_tables import grid_spectrum, table_targets, wave_column
    from galclip.data.readers import ReaderError

    i = _fibre(_table_targets(table), name, targetid, row)
    tid, col = list(table_targets(table).items())[i]
    try:
        wave = wave_column(table)
        flux, ivar = grid_spectrum(name, table.data[wave], table.data[col], col, wave)
    except ReaderError as e:
        raise QueryFileError(str(e)) from None
    return flux, ivar, f"{name} row {i} (TARGETID {tid})"


def _first_table(hdul):
    for h in hdul:
        if h.is_image is False and h.data is not None and len(h.columns.names) > 1:
            return h.data
    return None


def _table_spectrum(data, name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(flux, ivar, ivar estimated?) of a wavelength/flux[/ivar] table, on the galclip grid."""
    cols = {c.lower(): c for c in data.columns.names}
    flux_col = cols.get("flux")
    if flux_col is None:
        raise QueryFileError(f"{name}: table has no 'flux' column (columns: {data.columns.names})")
    flux = np.asarray(data[flux_col], dtype=np.float64).reshape(-1)
    ivar = (np.asarray(data[cols["ivar"]], dtype=np.float64).reshape(-1) if "ivar" in cols
            else None)
    if "loglam" in cols:
        wave = 10.0 ** np.asarray(data[cols["loglam"]], dtype=np.float64).reshape(-1)
    else:
        key = next((cols[k] for k in ("wave", "wavelength", "lambda") if k in cols), None)
        if key is None:
            raise QueryFileError(f"{name}: table has no wavelength column ('wave', 'wavelength', "
                                 f"'lambda' or 'loglam'; columns: {data.columns.names})")
        wave = np.asarray(data[key], dtype=np.float64).reshape(-1)
    if not (len(wave) == len(flux) == len(flux if ivar is None else ivar)) or len(wave) < 2:
        raise QueryFileError(f"{name}: wavelength, flux and ivar columns differ in length")
    if ivar is None:   # estimated on the file's own pixels, then propagated by the resampling
        from galclip.data.noise import estimate_ivar

        order = np.argsort(wave)
        est = np.empty_like(flux)
        est[order] = estimate_ivar(flux[order], np.isfinite(wave[order]))
        return (*resample_spectrum(wave, flux, est), True)
    return (*resample_spectrum(wave, flux, ivar), False)


def _image_spectrum(hdul, name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    arrays = {h.name.upper(): np.asarray(h.data).reshape(-1) for h in hdul
              if getattr(h, "is_image", False) and h.data is not None}
    flux = next((a for k, a in arrays.items() if k != "IVAR" and a.size == C.N_WAVE), None)
    if flux is None:
        raise QueryFileError(f"{name}: found no DESI coadd arms, spectrum table, or {C.N_WAVE}-"
                             f"pixel flux array (image HDU sizes: "
                             f"{ {k: a.size for k, a in arrays.items()} })")
    ivar = arrays.get("IVAR")
    if ivar is None or ivar.size != C.N_WAVE:
        from galclip.data.noise import estimate_grid_ivar

        flux = flux.astype(np.float64)
        return flux, estimate_grid_ivar(flux, np.isfinite(flux)), True
    return flux.astype(np.float64), ivar.astype(np.float64), False
