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
    fit_image_size,
    guarded,
    iter_chunks,
    open_h5,
    position_id,
    select_bands,
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
    ra, dec = (_read(path, f, k, start, stop).astype(np.float64) for k in ("ra", "dec"))
    raw_ids = _read(path, f, "object_id", start, stop)
    ids, from_tid = _ids(path, raw_ids, ra, dec)
    cube = _read(path, f, "image_array", start, stop).astype(np.float32)
    bands = _read(path, f, "image_band", start, stop)
    ivar = _read(path, f, "image_ivar", start, stop).astype(np.float32) if "image_ivar" in f \
        else np.ones_like(cube)
    keep, imgs, ivs, resized = [], [], [], []
    for i in range(stop - start):
        names = [b.decode() if isinstance(b, bytes) else str(b) for b in bands[i]]
        img = select_bands(path, f"dataset 'image_band' row {start + i}", names, cube[i])
        iv = select_bands(path, f"dataset 'image_band' row {start + i}", names, ivar[i])
        if not (np.isfinite(img).all() and np.isfinite(iv).all() and (iv >= 0).all()):
            rejects.add(path, "image_array/image_ivar", "bad data: non-finite pixels or "
                        "negative ivar", start + i, raw_ids[i].decode() if isinstance(
                            raw_ids[i], bytes) else raw_ids[i])
            continue
        img, flag = fit_image_size(img)
        keep.append(i)
        imgs.append(img)
        ivs.append(fit_image_size(iv)[0])
        resized.append(flag)
    k = np.array(keep, dtype=np.int64)
    src_ids = np.array([r.decode() if isinstance(r, bytes) else str(r) for r in raw_ids])
    return {"object_id": ids[k], "row": start + k, "ra": ra[k], "dec": dec[k],
            "image": np.stack(imgs) if imgs else np.zeros((0, *C.IMAGE_SHAPE), np.float32),
            "image_ivar": np.stack(ivs) if ivs else np.zeros((0, *C.IMAGE_SHAPE), np.float32),
            "image_resized": np.array(resized, dtype=bool),
            "id_from_targetid": np.full(len(k), from_tid),
            "source_object_id": src_ids[k], "source": np.full(len(k), path.name)}


# ----------------------------------------------------------------------------- DESI
def iter_mmu_desi(path: str | Path, rejects: RejectLog | None = None,
                  chunk: int = 64) -> Iterator[Batch]:
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog(strict=True)
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
    flux = _read(path, f, "spectrum_flux", start, stop).astype(np.float32)
    ivar = _read(path, f, "spectrum_ivar", start, stop).astype(np.float32)
    if flux.shape[1:] != (C.N_WAVE,) or ivar.shape != flux.shape:
        raise ReaderError(path, "dataset 'spectrum_flux'", f"row shape {flux.shape[1:]} / ivar "
                          f"{ivar.shape[1:]}, expected ({C.N_WAVE},)")
    if "spectrum_lambda" in f:
        lam = _read(path, f, "spectrum_lambda", start, stop).reshape(-1, C.N_WAVE)
        if np.abs(lam - C.wavelength_grid()).max(initial=0) > GRID_TOLERANCE_A:
            raise ReaderError(path, "dataset 'spectrum_lambda'", "not the 3600 + 0.8 i A grid",
                              start)
    if "spectrum_mask" in f:
        ivar = np.where(_read(path, f, "spectrum_mask", start, stop).astype(bool), 0, ivar)
    ra, dec = (_read(path, f, k, start, stop).astype(np.float64) for k in ("ra", "dec"))
    ids, _ = _ids(path, _read(path, f, "object_id", start, stop), ra, dec)
    bad = ~np.isfinite(ivar).all(1) | (ivar < 0).any(1) | ~np.where(ivar > 0, np.isfinite(flux),
                                                                     True).all(1)
    for i in np.flatnonzero(bad):
        rejects.add(path, "spectrum_flux/spectrum_ivar", "bad data: non-finite flux or "
                    "negative/non-finite ivar", start + int(i), int(ids[i]))
    k = np.flatnonzero(~bad)
    z = (_read(path, f, zkey, start, stop).astype(np.float32) if zkey
         else np.full(stop - start, np.nan, np.float32))
    out = {"object_id": ids[k], "row": (start + k).astype(np.int64), "ra": ra[k], "dec": dec[k],
           "redshift": z[k], "spectrum_flux": np.where(ivar > 0, flux, 0)[k],
           "spectrum_ivar": ivar[k], "source": np.full(len(k), path.name)}
    for key, col, dtype in (("ZWARN", "zwarn", np.int64), ("SPECTYPE", "spectype", str)):
        if key in f:
            vals = _read(path, f, key, start, stop)
            vals = np.array([v.decode().strip() if isinstance(v, bytes) else v for v in vals])
            out[col] = vals.astype(dtype)[k]
    return out
