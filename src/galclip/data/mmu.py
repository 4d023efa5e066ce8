"""Multimodal Universe (MMU) HDF5 files: the Legacy Survey images and the DESI spectra parts.

Schemas as written by ``scripts/legacysurvey/build_parent_sample.py`` and
``scripts/desi/build_parent_sample.py`` of github.com/MultimodalUniverse/MultimodalUniverse
(one HDF5 file per HEALPix, ``<part>/healpix=<n>/001-of-001.hdf5``, one dataset per column):

* Legacy Survey DR10: ``object_id`` (bytes, "BRICKNAME-OBJID"), ``ra``, ``dec``,
  ``image_array`` (N, 4, 160, 160) nanomaggies, ``image_band`` (N, 4) band names
  (b"des-g", b"des-r", b"des-i", b"des-z"), ``image_ivar`` (N, 4, 160, 160), ``image_mask``,
  ``image_psf_fwhm``, ``image_scale`` and the sweep columns. galclip keeps g, r, z by name and
  centre-crops 160 -> 152 px (flagged ``image_resized``); the ivar is kept as ``image_ivar``.
* DESI: ``object_id`` (= TARGETID), ``ra``, ``dec``, ``spectrum_flux``, ``spectrum_ivar``,
  ``spectrum_lambda`` (N, 7781), ``spectrum_mask`` (bool, True = bad) and the zcatalog columns
  (``Z``, ``ZERR``, ``ZWARN``, ``SPECTYPE``, ...). ``spectrum_lambda`` must equal the galclip
  grid; masked pixels get ivar = 0.

Ingest checks (ranges in :mod:`galclip.data.readers`; a bad row is a reject naming file,
dataset, row and object id, an error when strict): ``ra`` finite in [0, 360), ``dec`` in
[-90, 90]; Legacy Survey pixels finite with |pixel| <= ``IMAGE_LIMIT`` nanomaggies and
``image_ivar`` finite in [0, ``IMAGE_IVAR_LIMIT``]; DESI ivar finite in [0, ``IVAR_LIMIT``],
unmasked flux finite with |flux| <= ``FLUX_LIMIT`` and ``Z`` finite in ``REDSHIFT_RANGE``. A
non-numeric column is an error naming the file and dataset.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.data.readers import (
    Batch,
    ReaderError,
    RejectLog,
    coordinate_problem,
    fit_image_size,
    guarded,
    guarded_iter,
    image_problem,
    iter_chunks,
    numeric_column,
    open_h5,
    position_id,
    redshift_problem,
    reject_rows,
    select_bands,
    spectrum_problem,
)

GRID_TOLERANCE_A = 1e-2


def mmu_layout(f) -> str | None:
    """'legacysurvey' or 'desi' from the datasets an open HDF5 file holds; None if neither."""
    if "image_array" in f:
        return "legacysurvey"
    if "spectrum_flux" in f:
        return "desi"
    return None


def mmu_kind(path: str | Path) -> str:
    """'legacysurvey' or 'desi' from the datasets an MMU HDF5 file holds."""
    import h5py

    path = Path(path)

    def probe() -> str:
        with h5py.File(path, "r") as f:
            kind = mmu_layout(f)
            if kind is None:
                raise ReaderError(path, "datasets", "neither 'image_array' (Legacy Survey) nor "
                                  f"'spectrum_flux' (DESI); has {sorted(f.keys())[:12]}")
            return kind
    return guarded(path, "HDF5", probe)


def _open(path: Path, required: tuple[str, ...]):
    f = open_h5(path)
    n = None
    for key in required:
        if key not in f:
            f.close()
            raise ReaderError(path, f"dataset '{key}'", "missing")
        if n is None:
            n = len(f[key])
        elif len(f[key]) != n:
            f.close()
            raise ReaderError(path, f"dataset '{key}'", f"{len(f[key])} rows, expected {n}")
    return f, n


def _read(path: Path, f, key: str, start: int, stop: int) -> np.ndarray:
    return guarded(path, f"dataset '{key}'", lambda: np.asarray(f[key][start:stop]))


def _numbers(path: Path, f, key: str, start: int, stop: int, ndim: int = 1) -> np.ndarray:
    """Rows of a numeric dataset as float64 (a non-numeric one is a ReaderError)."""
    return numeric_column(path, f"dataset '{key}'", _read(path, f, key, start, stop),
                          ndim).astype(np.float64)


def _ids(path: Path, raw: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, bool]:
    """Integer ids: TARGETID-like integers as they are; strings ("brick-objid") -> position id."""
    if raw.dtype.kind in "iu":
        return raw.astype(np.int64), True
    text = [r.decode() if isinstance(r, bytes) else str(r) for r in raw]
    if all(t.lstrip("-").isdigit() for t in text):
        return np.array([int(t) for t in text], dtype=np.int64), True
    return position_id(ra, dec), False


# ----------------------------------------------------------------------------- Legacy Survey
def iter_mmu_legacysurvey(path: str | Path, rejects: RejectLog | None = None,
                          chunk: int = 32) -> Iterator[Batch]:
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    yield from guarded_iter(path, "HDF5", _iter_ls(path, rejects, chunk))


def _iter_ls(path: Path, rejects: RejectLog, chunk: int) -> Iterator[Batch]:
    f, n = _open(path, ("object_id", "ra", "dec", "image_array", "image_band"))
    try:
        if f["image_array"].ndim != 4:
            raise ReaderError(path, "dataset 'image_array'", f"shape {f['image_array'].shape}, "
                              "expected (N, bands, H, W)")
        for start, stop in iter_chunks(n, chunk):
            batch = _ls_chunk(path, f, start, stop, rejects)
            if len(batch["object_id"]):
                yield batch
    finally:
        f.close()


def _ls_chunk(path: Path, f, start: int, stop: int, rejects: RejectLog) -> Batch:
    ra, dec = (_numbers(path, f, k, start, stop) for k in ("ra", "dec"))
    raw_ids = _read(path, f, "object_id", start, stop)
    ids, from_tid = _ids(path, raw_ids, ra, dec)
    cube = _numbers(path, f, "image_array", start, stop, 4).astype(np.float32)
    bands = _read(path, f, "image_band", start, stop)
    ivar = _numbers(path, f, "image_ivar", start, stop, 4).astype(np.float32) \
        if "image_ivar" in f else np.ones_like(cube)
    picked = []
    for i in range(stop - start):
        names = [b.decode() if isinstance(b, bytes) else str(b) for b in bands[i]]
        field = f"dataset 'image_band' row {start + i}"
        picked.append((select_bands(path, field, names, cube[i]),
                       select_bands(path, field, names, ivar[i])))
    problems = [coordinate_problem(ra[i], dec[i]) or image_problem(img, "image_array", iv)
                for i, (img, iv) in enumerate(picked)]
    k = np.flatnonzero(reject_rows(path, problems, start + np.arange(stop - start), raw_ids,
                                   rejects))
    fitted = [fit_image_size(picked[i][0]) for i in k]
    src_ids = np.array([r.decode() if isinstance(r, bytes) else str(r) for r in raw_ids])
    empty = np.zeros((0, *C.IMAGE_SHAPE), np.float32)
    return {"object_id": ids[k], "row": start + k, "ra": ra[k], "dec": dec[k],
            "image": np.stack([img for img, _ in fitted]) if len(k) else empty,
            "image_ivar": np.stack([fit_image_size(picked[i][1])[0] for i in k]) if len(k)
            else empty,
            "image_resized": np.array([flag for _, flag in fitted], dtype=bool),
            "id_from_targetid": np.full(len(k), from_tid),
            "source_object_id": src_ids[k], "source": np.full(len(k), path.name)}


# ----------------------------------------------------------------------------- DESI
def iter_mmu_desi(path: str | Path, rejects: RejectLog | None = None,
                  chunk: int = 64) -> Iterator[Batch]:
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    yield from guarded_iter(path, "HDF5", _iter_desi(path, rejects, chunk))


def _iter_desi(path: Path, rejects: RejectLog, chunk: int) -> Iterator[Batch]:
    f, n = _open(path, ("object_id", "ra", "dec", "spectrum_flux", "spectrum_ivar"))
    try:
        zkey = next((k for k in ("Z", "z") if k in f), None)
        for start, stop in iter_chunks(n, chunk):
            batch = _desi_chunk(path, f, zkey, start, stop, rejects)
            if len(batch["object_id"]):
                yield batch
    finally:
        f.close()


def _desi_chunk(path: Path, f, zkey: str | None, start: int, stop: int,
                rejects: RejectLog) -> Batch:
    flux = _numbers(path, f, "spectrum_flux", start, stop, 2).astype(np.float32)
    ivar = _numbers(path, f, "spectrum_ivar", start, stop, 2).astype(np.float32)
    if flux.shape[1:] != (C.N_WAVE,) or ivar.shape != flux.shape:
        raise ReaderError(path, "dataset 'spectrum_flux'", f"row shape {flux.shape[1:]} / ivar "
                          f"{ivar.shape[1:]}, expected ({C.N_WAVE},)")
    if "spectrum_lambda" in f:
        lam = _numbers(path, f, "spectrum_lambda", start, stop, 2)
        if lam.shape != flux.shape or not (np.abs(lam - C.wavelength_grid())
                                           <= GRID_TOLERANCE_A).all():        # NaN fails too
            raise ReaderError(path, "dataset 'spectrum_lambda'", "not the 3600 + 0.8 i A grid",
                              start)
    if "spectrum_mask" in f:
        ivar = np.where(_read(path, f, "spectrum_mask", start, stop).astype(bool), 0, ivar)
    ra, dec = (_numbers(path, f, k, start, stop) for k in ("ra", "dec"))
    ids, _ = _ids(path, _read(path, f, "object_id", start, stop), ra, dec)
    z = (_numbers(path, f, zkey, start, stop).astype(np.float32) if zkey
         else np.full(stop - start, np.nan, np.float32))
    problems = [coordinate_problem(ra[i], dec[i]) or spectrum_problem(flux[i], ivar[i],
                                                                      ivar[i] > 0)
                or (redshift_problem(z[i], zkey) if zkey else None) for i in range(stop - start)]
    k = np.flatnonzero(reject_rows(path, problems, start + np.arange(stop - start), ids,
                                   rejects))
    out = {"object_id": ids[k], "row": (start + k).astype(np.int64), "ra": ra[k], "dec": dec[k],
           "redshift": z[k], "spectrum_flux": np.where(ivar > 0, flux, 0)[k],
           "spectrum_ivar": ivar[k], "source": np.full(len(k), path.name)}
    for key, col, dtype in (("ZWARN", "zwarn", np.int64), ("SPECTYPE", "spectype", str)):
        if key in f:
            vals = _read(path, f, key, start, stop)
            vals = np.array([v.decode().strip() if isinstance(v, bytes) else v for v in vals])
            out[col] = vals.astype(dtype)[k]
    return out
