"""DESI spectra published as flux tables without errors, read with an estimated noise.

The format (DESIHIGH's "Andes" student files, ``coadd-<programme>-<tile>-<night>.fits``): one
binary table with a ``WAVELENGTH`` column (``WAVE`` in the tables' first versions; Angstrom,
the DESI 0.8 A grid from 3600 to 9824 A, the pixels of the arm overlaps listed twice, once per
camera) and one flux column per fibre
named ``TARGET<TARGETID>`` (1e-17 erg/s/cm^2/A). There is no inverse variance and no fibermap;
the positions and Legacy Survey fluxes are in the companion ``zbest`` file (``TARGET_RA``,
``TARGET_DEC``, ``FLUX_G/R/Z`` beside the redshift columns).

Reading: the two cameras' values of an overlap pixel are averaged, the spectrum is placed on
the galclip grid, and the ivar is estimated from the flux (:mod:`galclip.data.noise`, by arm and
arm overlap). Every spectrum read this way carries ``ivar_estimated = True``.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.data.noise import estimate_grid_ivar
from galclip.data.readers import Batch, ReaderError, RejectLog, guarded, spectrum_problem

TARGET_COLUMN = re.compile(r"^TARGET(-?\d+)$", re.IGNORECASE)
WAVE_COLUMNS = ("WAVELENGTH", "WAVE")   # the name in the current tables, then the older one
GRID_TOLERANCE_A = 1e-3
#: zbest columns copied into the dataset, when present (Legacy Survey fluxes in nanomaggies)
ZBEST_META = {"TARGET_RA": "ra", "TARGET_DEC": "dec", "FLUX_G": "flux_g", "FLUX_R": "flux_r",
              "FLUX_Z": "flux_z"}


def flux_table(hdul):
    """The flux-table HDU of an open FITS file (None if it is not one): a binary table with a
    wavelength column (:data:`WAVE_COLUMNS`) and at least one TARGET<TARGETID> column."""
    for h in hdul:
        cols = getattr(getattr(h, "columns", None), "names", None) or []
        if wave_column(h) and any(TARGET_COLUMN.match(c) for c in cols):
            return h
    return None


def wave_column(table) -> str | None:
    """The name of a table's wavelength column as the file spells it (None if it has none)."""
    cols = {c.upper(): c for c in getattr(getattr(table, "columns", None), "names", None) or []}
    return next((cols[w] for w in WAVE_COLUMNS if w in cols), None)


def table_targets(table) -> dict[int, str]:
    """{TARGETID: column name} of a flux table."""
    return {int(m.group(1)): c for c in table.columns.names if (m := TARGET_COLUMN.match(c))}


def grid_spectrum(path: str | Path, wave: np.ndarray, flux: np.ndarray, column: str,
                  wave_name: str = WAVE_COLUMNS[0]) -> tuple[np.ndarray, np.ndarray]:
    """(flux, estimated ivar), each (7781,), of one table column on the galclip grid: values at
    the same grid pixel (the arm overlaps) are averaged; pixels without a finite value are bad.
    ``wave_name``: the wavelength column's name in the file, for the error message."""
    wave, flux = np.asarray(wave, np.float64), np.asarray(flux, np.float64)
    idx = np.rint((wave - C.WAVE_MIN) / C.WAVE_STEP).astype(np.int64)
    off = np.abs(C.WAVE_MIN + C.WAVE_STEP * idx - wave)
    if not np.isfinite(wave).all() or off.max(initial=0) > GRID_TOLERANCE_A:
        raise ReaderError(path, f"column {wave_name}", f"wavelengths are not on the "
                          f"{C.WAVE_MIN:g} + {C.WAVE_STEP:g} i Angstrom grid")
    inside = (idx >= 0) & (idx < C.N_WAVE) & np.isfinite(flux)
    n = np.bincount(idx[inside], minlength=C.N_WAVE)[:C.N_WAVE]
    total = np.bincount(idx[inside], weights=flux[inside], minlength=C.N_WAVE)[:C.N_WAVE]
    good = n > 0
    out = np.where(good, total / np.maximum(n, 1), 0.0)
    ivar = estimate_grid_ivar(out, good)
    if not (ivar > 0).any():
        raise ReaderError(path, f"column {column}", "no finite flux on the "
                          f"{C.WAVE_MIN:g}-{C.wavelength_grid()[-1]:g} A grid")
    return out.astype(np.float32), ivar.astype(np.float32)


def read_flux_table(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TARGETIDs (N,), flux (N, 7781) and estimated ivar (N, 7781) of every fibre in a file."""
    from astropy.io import fits

    path = Path(path)

    def load():
        with fits.open(path, memmap=False) as hdul:
            h = flux_table(hdul)
            if h is None:
                raise ReaderError(path, "HDU 1", f"not a flux table (no {' or '.join(WAVE_COLUMNS)} "
                                  f"column with TARGET<TARGETID> flux columns)")
            targets = table_targets(h)
            name = wave_column(h)
            wave = np.asarray(h.data[name])
            spectra = [grid_spectrum(path, wave, h.data[c], c, name) for c in targets.values()]
        return np.array(list(targets), np.int64), spectra

    tids, spectra = guarded(path, "flux table", load)
    flux = np.stack([f for f, _ in spectra]) if spectra else np.zeros((0, C.N_WAVE), np.float32)
    ivar = np.stack([i for _, i in spectra]) if spectra else np.zeros((0, C.N_WAVE), np.float32)
    return tids, flux, ivar


def is_flux_table_file(path: str | Path) -> bool:
    """True for a FITS file holding a flux table and no DESI coadd arms."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # a damaged file is the DESI reader's to report
            with fits.open(path, memmap=False) as hdul:
                return "B_FLUX" not in [h.name for h in hdul] and flux_table(hdul) is not None
    except Exception:  # noqa: BLE001 - unreadable: the DESI reader reports it, naming the HDU
        return False


def zbest_meta(files: list[str], tids: np.ndarray) -> dict[str, np.ndarray]:
    """ra, dec, flux_g/r/z of ``tids`` from the redshift files' TARGET_RA ... columns (NaN where
    a file lacks a column or a TARGETID)."""
    from astropy.io import fits

    out = {v: np.full(len(tids), np.nan) for v in ZBEST_META.values()}
    for f in files:
        with fits.open(f, memmap=False) as hdul:
            for h in hdul:
                cols = {c.upper(): c for c in (getattr(getattr(h, "columns", None), "names",
                                                       None) or [])}
                if "TARGETID" not in cols:
                    continue
                ids = np.asarray(h.data[cols["TARGETID"]], np.int64)
                where = {int(t): i for i, t in enumerate(ids)}
                rows = np.array([where.get(int(t), -1) for t in tids])
                for src, dst in ZBEST_META.items():
                    if src in cols and (rows >= 0).any():
                        vals = np.asarray(h.data[cols[src]], np.float64)
                        out[dst][rows >= 0] = vals[rows[rows >= 0]]
    return out


def iter_desi_table(path: str | Path, redshifts=None, rejects: RejectLog | None = None,
                    spectype: str | None = None, zwarn_zero: bool = False,
                    require_redshift: bool = True) -> Iterator[Batch]:
    """The fibres of a flux table as one batch of dataset rows (``ivar_estimated`` True), with
    redshifts and positions from the redshift files; the selections of
    :func:`galclip.data.desi.iter_desi_spectra` apply (records in ``rejects``)."""
    from galclip.data.desi import RedshiftTable, _batch, _select, _valid_values

    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    zt = redshifts if redshifts is not None else RedshiftTable()
    tids, flux, ivar = read_flux_table(path)
    meta = {k: v.astype(np.float64 if k in ("ra", "dec") else np.float32)
            for k, v in zbest_meta(zt.files, tids).items()}
    meta["fiber_flux_r"] = np.full(len(tids), np.nan, np.float32)
    zrow = zt.lookup(tids)
    keep = _select(path, tids, np.full(len(tids), ""), zrow, zt, rejects, spectype, zwarn_zero,
                   require_redshift)
    keep &= _valid_values(path, tids, meta, zrow, zt, rejects, keep)
    ok = []
    for r in np.flatnonzero(keep):
        problem = spectrum_problem(flux[r], ivar[r], ivar[r] > 0)
        if problem:
            rejects.add(path, *problem, int(r), int(tids[r]))
        else:
            ok.append(r)
    if ok:
        batch = _batch(path, np.array(ok), 0, tids, meta, zrow, zt, flux, ivar)
        batch["ivar_estimated"] = np.ones(len(ok), bool)
        yield batch
