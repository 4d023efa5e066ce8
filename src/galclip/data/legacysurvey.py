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
    ls_targetid,
    open_h5,
    position_id,
    select_bands,
)

STEIN_PUBLISHED_BANDS = ("g", "r", "z")


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
    from astropy.io import fits
    from astropy.wcs import WCS

    path = Path(path)

    def load():
        with fits.open(path, memmap=False) as hdul:
            return np.array(hdul[0].data, dtype=np.float32), hdul[0].header.copy()

    cube, header = guarded(path, "primary HDU", load)
    if cube.ndim != 3:
        raise ReaderError(path, "primary HDU", f"expected a (bands, H, W) cube, got shape "
                          f"{cube.shape}")
    names = header_bands(path, header, cube.shape[0])
    cube = select_bands(path, "primary header BANDS", names, cube)
    if not np.all(np.isfinite(cube)):
        raise ReaderError(path, "primary HDU", f"{int((~np.isfinite(cube)).sum())} non-finite "
                          "pixels")
    if "CRVAL1" not in header or "CRVAL2" not in header:
        raise ReaderError(path, "primary header CRVAL1/CRVAL2", "no WCS: cannot tell where "
                          "the cutout is on the sky")
    wcs = guarded(path, "primary header WCS", lambda: WCS(header, naxis=2))
    h, w = cube.shape[1:]
    ra, dec = guarded(path, "primary header WCS",
                      lambda: wcs.all_pix2world([[(w - 1) / 2, (h - 1) / 2]], 0)[0])
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
        yield from _iter_stein(path, f, rejects, chunk)
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
    names, _ = stein_bands(f)
    cols = {k: guarded(path, f"dataset '{k}'", lambda k=k: np.asarray(f[k][:]))
            for k in ("ra", "dec", "release", "brickid", "objid", "z_spec") if k in f}
    for k, v in cols.items():
        if len(v) != n:
            raise ReaderError(path, f"dataset '{k}'", f"{len(v)} rows, 'images' has {n}")
    ids, from_tid = _stein_ids(cols)
    for start, stop in iter_chunks(n, chunk):
        block = guarded(path, "dataset 'images'",
                        lambda s=slice(start, stop): np.asarray(images[s], dtype=np.float32))
        good, out = [], []
        for i in range(stop - start):
            if not np.all(np.isfinite(block[i])):
                rejects.add(path, "images", "bad data: non-finite pixels", start + i,
                            int(ids[start + i]))
                continue
            img, resized = fit_image_size(select_bands(path, "images", names, block[i]))
            good.append(start + i)
            out.append((img, resized))
        if good:
            g = np.array(good)
            z = cols.get("z_spec")
            yield {"object_id": ids[g], "row": g.astype(np.int64),
                   "ra": cols["ra"][g].astype(np.float64), "dec": cols["dec"][g].astype(np.float64),
                   "image": np.stack([o[0] for o in out]),
                   "image_resized": np.array([o[1] for o in out]),
                   "id_from_targetid": np.full(len(g), from_tid),
                   "redshift": (np.where(z[g] > 0, z[g], np.nan) if z is not None
                                else np.full(len(g), np.nan)).astype(np.float32),
                   "source": np.full(len(g), path.name)}


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
