"""Legacy Survey image cutouts: the viewer's cutout FITS and the Stein et al. DR9 HDF5 files.

Cutout FITS (``https://www.legacysurvey.org/viewer/cutout.fits?layer=ls-dr9&bands=grz&
pixscale=0.262&size=152``): the primary HDU holds a (bands, H, W) float32 cube in nanomaggies,
the header names the planes (``BANDS = 'grz'`` and ``BAND0``, ``BAND1``, ...) and carries a TAN
WCS centred on the requested position. Band order is taken from those keywords; a file
without them is an error, never a guess.

Stein et al. (2022) DR9 HDF5 (github.com/georgestein/ssl-legacysurvey, ``images_npix152_*.h5``):
``images`` (N, 3, 152, 152) float32 g, r, z nanomaggies with ``ra``, ``dec`` and sweep
columns (``release``, ``brickid``, ``objid``, ``z_spec`` ...). These files store no band
names; the order g, r, z is the one published in that repository's README, and a ``bands``
attribute, when present, overrides it. (Release, brickid, objid) become the DESI TARGETID,
so these images join DESI spectra exactly.

Cutouts of another size are centre-cropped or zero-padded to 152 px and flagged
(``image_resized``).

Ingest checks (ranges in :mod:`galclip.data.readers`): pixels finite with |pixel| <=
``IMAGE_LIMIT`` nanomaggies; the centre (cutout: from the WCS; Stein: ``ra``, ``dec``) finite
with RA in [0, 360) and Dec in [-90, 90]; a Stein ``z_spec`` either NaN / <= 0 (no redshift,
the sweep's -99) or finite in ``REDSHIFT_RANGE``. A bad cutout is an error naming the file (a
reject under ``--skip-bad``); a bad Stein row is a reject naming file, dataset, row and id.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.data.readers import (
    Batch,
    Problem,
    ReaderError,
    RejectLog,
    coordinate_problem,
    fit_image_size,
    guarded,
    guarded_iter,
    image_problem,
    iter_chunks,
    ls_targetid,
    numeric_column,
    open_h5,
    position_id,
    redshift_problem,
    reject_rows,
    select_bands,
)

STEIN_PUBLISHED_BANDS = ("g", "r", "z")
STEIN_COLUMNS = ("ra", "dec", "release", "brickid", "objid", "z_spec")


# ----------------------------------------------------------------------------- cutout FITS
def header_bands(path: str | Path, header, nplanes: int) -> list[str]:
    """Band names of the planes of a cutout cube, from ``BAND0..`` or ``BANDS``."""
    keyed = [header.get(f"BAND{i}") for i in range(nplanes)]
    if all(isinstance(b, str) and b.strip() for b in keyed):
        return [b.strip() for b in keyed]
    bands = header.get("BANDS")
    if isinstance(bands, str) and len(bands.strip()) == nplanes:
        return list(bands.strip())
    raise ReaderError(path, "primary header BANDS/BAND0..", "no band names for the "
                      f"{nplanes} image planes; refusing to assume an order")


def read_cutout_fits(path: str | Path) -> dict:
    """One viewer cutout: image (3, 152, 152) g, r, z; ra, dec of the centre; resize flag."""
    path = Path(path)
    # astropy parses cards lazily: a corrupt one raises (VerifyError) when first looked at
    return guarded(path, "primary header", lambda: _read_cutout(path))


def _read_cutout(path: Path) -> dict:
    from astropy.io import fits
    from astropy.wcs import WCS

    def load():
        with fits.open(path, memmap=False) as hdul:
            return np.array(hdul[0].data, dtype=np.float32), hdul[0].header.copy()

    cube, header = guarded(path, "primary HDU", load)
    if cube.ndim != 3:
        raise ReaderError(path, "primary HDU", f"expected a (bands, H, W) cube, got shape "
                          f"{cube.shape}")
    names = header_bands(path, header, cube.shape[0])
    cube = select_bands(path, "primary header BANDS", names, cube)
    if problem := image_problem(cube):
        raise ReaderError(path, "primary HDU", problem[1])
    if "CRVAL1" not in header or "CRVAL2" not in header:
        raise ReaderError(path, "primary header CRVAL1/CRVAL2", "no WCS: cannot tell where "
                          "the cutout is on the sky")
    wcs = guarded(path, "primary header WCS", lambda: WCS(header, naxis=2))
    h, w = cube.shape[1:]
    ra, dec = guarded(path, "primary header WCS",
                      lambda: wcs.all_pix2world([[(w - 1) / 2, (h - 1) / 2]], 0)[0])
    if problem := coordinate_problem(ra, dec, ("RA", "DEC")):
        raise ReaderError(path, "primary header WCS", problem[1])
    image, resized = fit_image_size(cube)
    tid = header.get("TARGETID")
    return {"image": image, "ra": float(ra), "dec": float(dec), "image_resized": resized,
            "bands": names, "object_id": int(tid) if tid is not None else None}


def iter_cutout_fits(paths: list[str | Path], rejects: RejectLog | None = None,
                     chunk: int = 64) -> Iterator[Batch]:
    """Stream cutout FITS files as image batches (one row per file)."""
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    paths = [Path(p) for p in paths]
    for start, stop in iter_chunks(len(paths), chunk):
        rows = []
        for p in paths[start:stop]:
            try:
                rows.append((p, read_cutout_fits(p)))
            except ReaderError as e:
                rejects.add(e.path, e.field or "", e.reason, e.row)
        if rows:
            yield _cutout_batch(rows)


def _cutout_batch(rows: list[tuple[Path, dict]]) -> Batch:
    ra = np.array([r["ra"] for _, r in rows])
    dec = np.array([r["dec"] for _, r in rows])
    ids = position_id(ra, dec)
    for i, (_, r) in enumerate(rows):
        if r["object_id"] is not None:
            ids[i] = r["object_id"]
    return {"object_id": ids, "row": np.zeros(len(rows), np.int64), "ra": ra, "dec": dec,
            "image": np.stack([r["image"] for _, r in rows]),
            "image_resized": np.array([r["image_resized"] for _, r in rows]),
            "id_from_targetid": np.array([r["object_id"] is not None for _, r in rows]),
            "source": np.array([p.name for p, _ in rows])}


# ----------------------------------------------------------------------------- Stein HDF5
def stein_bands(f) -> tuple[list[str], str]:
    """Band names of a Stein file and where they came from."""
    for obj, where in ((f["images"], "images attribute 'bands'"), (f, "file attribute 'bands'")):
        if "bands" in obj.attrs:
            raw = obj.attrs["bands"]
            names = list(raw) if not isinstance(raw, str) else list(raw)
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names], where
    return list(STEIN_PUBLISHED_BANDS), "published layout (ssl-legacysurvey README: g, r, z)"


def iter_stein_h5(path: str | Path, rejects: RejectLog | None = None,
                  chunk: int = 64) -> Iterator[Batch]:
    """Stream a Stein et al. DR9 cutout file (``images`` (N, 3, H, W) + ``ra``, ``dec``)."""
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    f = open_h5(path)
    try:
        yield from guarded_iter(path, "HDF5", _iter_stein(path, f, rejects, chunk))
    finally:
        f.close()


def _iter_stein(path: Path, f, rejects: RejectLog, chunk: int) -> Iterator[Batch]:
    for key in ("images", "ra", "dec"):
        if key not in f:
            raise ReaderError(path, f"dataset '{key}'", "missing (not a Stein et al. cutout file)")
    images = f["images"]
    if images.ndim != 4:
        raise ReaderError(path, "dataset 'images'", f"shape {images.shape}, expected (N, bands, "
                          "H, W)")
    n = images.shape[0]
    for k in STEIN_COLUMNS:
        if k in f and len(f[k]) != n:
            raise ReaderError(path, f"dataset '{k}'", f"{len(f[k])} rows, 'images' has {n}")
    names, _ = stein_bands(f)
    for start, stop in iter_chunks(n, chunk):
        batch = stein_chunk(path, f, names, start, stop, rejects)
        if len(batch["object_id"]):
            yield batch


def stein_chunk(path: Path, f, names: list[str], start: int, stop: int,
                rejects: RejectLog) -> Batch:
    """Rows [start, stop) of an open Stein file; rows with an impossible position, pixel or
    z_spec become rejects."""
    cols = {k: numeric_column(path, f"dataset '{k}'", guarded(
        path, f"dataset '{k}'", lambda k=k: np.asarray(f[k][start:stop])))
        for k in STEIN_COLUMNS if k in f}
    ids, from_tid = _stein_ids(cols)
    block = guarded(path, "dataset 'images'",
                    lambda: np.asarray(f["images"][start:stop], dtype=np.float32))
    z = cols.get("z_spec", np.full(stop - start, np.nan)).astype(np.float64)
    rows = np.arange(start, stop)
    problems = [coordinate_problem(cols["ra"][i], cols["dec"][i]) or image_problem(
        block[i], "images") or _z_spec_problem(z[i]) for i in range(stop - start)]
    k = np.flatnonzero(reject_rows(path, problems, rows, ids, rejects))
    out = [fit_image_size(select_bands(path, "images", names, block[i])) for i in k]
    return {"object_id": ids[k], "row": rows[k].astype(np.int64),
            "ra": cols["ra"][k].astype(np.float64), "dec": cols["dec"][k].astype(np.float64),
            "image": np.stack([o[0] for o in out]) if out else np.zeros((0, *C.IMAGE_SHAPE),
                                                                         np.float32),
            "image_resized": np.array([o[1] for o in out], dtype=bool),
            "id_from_targetid": np.full(len(k), from_tid),
            "redshift": np.where(z[k] > 0, z[k], np.nan).astype(np.float32),
            "source": np.full(len(k), path.name)}


def _z_spec_problem(z: float) -> Problem | None:
    """NaN or z_spec <= 0 (the sweep's -99) means no spectroscopic redshift; anything else must
    be a possible redshift."""
    return None if np.isnan(z) or (np.isfinite(z) and z <= 0) else redshift_problem(z, "z_spec")


def _stein_ids(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, bool]:
    if all(k in cols for k in ("release", "brickid", "objid")):
        return ls_targetid(cols["release"], cols["brickid"], cols["objid"]), True
    return position_id(cols["ra"], cols["dec"]), False


def write_cutout_fits(path: str | Path, cube: np.ndarray, ra: float, dec: float,
                      bands: str = "grz", pixscale: float = C.PIXEL_SCALE_ARCSEC) -> None:
    """Write a cube the way the viewer's cutout service does (for tests and examples)."""
    from astropy.io import fits

    h, w = cube.shape[1:]
    hdr = fits.Header()
    hdr["BANDS"] = bands
    for i, b in enumerate(bands):
        hdr[f"BAND{i}"] = b
    hdr.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
                "CRPIX1": (w + 1) / 2, "CRPIX2": (h + 1) / 2, "CD1_1": -pixscale / 3600,
                "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": pixscale / 3600})
    fits.PrimaryHDU(np.asarray(cube, np.float32), header=hdr).writeto(path, overwrite=True)
