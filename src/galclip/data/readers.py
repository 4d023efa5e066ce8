"""What every survey reader shares: errors that name file, field and row; rejects; record batches.

A reader turns one survey file into :class:`Batch` es: dicts of numpy arrays, one row per object,
with the columns of the galclip dataset format (``object_id``, ``ra``, ``dec``, ``redshift``,
``image`` (3, 152, 152) and/or ``spectrum_flux``/``spectrum_ivar`` (7781,)) plus ``row`` (the
row in the source file) and any reader-specific scalar columns. A bad row either raises
:class:`ReaderError` (naming file, HDU/column and row) or, when the caller asked to skip bad
rows, becomes a :class:`Reject` that ends up in ``rejects.csv``.

The physical ranges every reader checks at ingest live here (:data:`RA_RANGE` ...
:data:`IMAGE_IVAR_LIMIT`), with one ``*_problem`` function per kind of value. Each returns
``None`` or a :data:`Problem` (field, reason), the reason's category first ("bad coordinates",
"bad redshift", "bad data", "bad property"), so :func:`reject_rows` can record it.
"""
from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from galclip import conventions as C
from galclip.data.format import DatasetError

T = TypeVar("T")
Batch = dict[str, np.ndarray]
#: (field, reason) of a bad value; the reason starts with its category and names the field
Problem = tuple[str, str]

RA_RANGE = (0.0, 360.0)          # degrees, [0, 360)
DEC_RANGE = (-90.0, 90.0)        # degrees, [-90, 90]
#: redrock's template range: stars near 0 (|z| < 0.01), galaxies to 1.7, QSOs to ~7
REDSHIFT_RANGE = (-0.01, 8.0)
#: spectra, 1e-17 erg/s/cm^2/A: a 10th-magnitude star is ~1e4; ivar <= 1e10 means sigma >= 1e-5
FLUX_LIMIT = 1e6
IVAR_LIMIT = 1e10
#: image pixels, nanomaggies (mag = 22.5 - 2.5 log10 f): 1e6 nMgy is a 7.5 mag source inside
#: one 0.262" pixel, far above any unsaturated Legacy Survey coadd pixel (bright galaxy cores
#: and stars are 1e1-1e4); beyond it a value is float garbage (1e30, 3e38) or an overflow
IMAGE_LIMIT = 1e6
#: image ivar, nMgy^-2: 1e10 means sigma >= 1e-5 nMgy (35 mag per pixel), far below any coadd
IMAGE_IVAR_LIMIT = 1e10


class ReaderError(DatasetError):
    """A survey file is unreadable or holds invalid data; the message names file, field and row."""

    def __init__(self, path: str | Path, field: str | None, message: str, row: int | None = None):
        self.path, self.field, self.row, self.reason = str(path), field, row, message
        where = f"{path}"
        if field:
            where += f": {field}"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Reject:
    """One object left out of a dataset, and why (a line of ``rejects.csv``)."""

    file: str
    row: int | None
    object_id: int | str | None
    field: str
    reason: str

    FIELDS = ("file", "row", "object_id", "field", "reason")

    def as_row(self) -> list[Any]:
        return [self.file, "" if self.row is None else self.row,
                "" if self.object_id is None else self.object_id, self.field, self.reason]


class RejectLog:
    """Collects rejects; ``strict`` turns the first one into a :class:`ReaderError`."""

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.items: list[Reject] = []

    def add(self, path: str | Path, field: str, reason: str, row: int | None = None,
            object_id: int | str | None = None, fatal: bool = True) -> None:
        """Record a bad row; raises when strict and the problem is ``fatal`` (bad data, not a
        selection such as a sky fibre)."""
        if self.strict and fatal:
            raise ReaderError(path, field, reason, row)
        self.items.append(Reject(str(path), row, object_id, field, reason))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.items:
            key = r.reason.split(":")[0]
            out[key] = out.get(key, 0) + 1
        return out

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(Reject.FIELDS)
            for r in self.items:
                w.writerow(r.as_row())


#: Packages that parse survey files: a TypeError, KeyError or AttributeError raised inside one
#: of them means a malformed file (a missing HDU or dataset, a header card of the wrong type).
FILE_LIBRARIES = ("astropy", "h5py", "pyarrow", "fitsio")


def guarded(path: str | Path, field: str, fn: Callable[[], T]) -> T:
    """Run one I/O step; turn what a truncated or malformed file raises (OSError, a bad header,
    an HDU or dataset that is not there) into a ReaderError naming the file. A TypeError,
    KeyError or AttributeError raised by galclip's own code is a bug and propagates as it is."""
    try:
        return fn()
    except ReaderError:
        raise
    except _library_errors() as e:
        if isinstance(e, (TypeError, KeyError, AttributeError)) and not _raised_in_library(e):
            raise
        raise ReaderError(path, field, f"cannot read ({type(e).__name__}: {e})") from e


def guarded_iter(path: str | Path, field: str, batches: Iterator[T]) -> Iterator[T]:
    """``batches`` with each step run under :func:`guarded`: what h5py raises while a reader
    probes a damaged file (a bad heap or B-tree behind ``key in f``) is a ReaderError too."""
    end = object()
    while (item := guarded(path, field, lambda: next(batches, end))) is not end:
        yield item


def open_h5(path: str | Path):
    """``h5py.File(path, "r")``; a truncated or non-HDF5 file is a ReaderError naming it."""
    import h5py

    return guarded(path, "HDF5", lambda: h5py.File(path, "r"))


def _library_errors() -> tuple[type[BaseException], ...]:
    """What astropy.io.fits, h5py and pyarrow raise on truncated or corrupt files."""
    from astropy.io.fits.verify import VerifyError

    return (OSError, ValueError, TypeError, KeyError, IndexError, EOFError, AttributeError,
            RuntimeError, OverflowError, MemoryError, VerifyError)


def _raised_in_library(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is code of :data:`FILE_LIBRARIES`."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module.split(".")[0] in FILE_LIBRARIES


def position_id(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A stable negative int64 id from a sky position (rounded to 1e-6 deg), for objects that
    carry no TARGETID. Negative, so it never collides with a DESI TARGETID of a real target."""
    out = np.empty(len(ra), dtype=np.int64)
    for i, (a, d) in enumerate(zip(np.asarray(ra, float), np.asarray(dec, float), strict=True)):
        h = hashlib.blake2b(f"{a:.6f},{d:.6f}".encode(), digest_size=8).digest()
        out[i] = -(int.from_bytes(h, "little") >> 2) - 1
    return out


def ls_targetid(release: np.ndarray, brickid: np.ndarray, objid: np.ndarray) -> np.ndarray:
    """DESI TARGETID of a Legacy Survey source (desitarget bit layout: OBJID bits 0-21,
    BRICKID bits 22-41, RELEASE bits 42-57), so image files can be joined on TARGETID."""
    r, b, o = (np.asarray(x, dtype=np.int64) for x in (release, brickid, objid))
    return o | (b << 22) | (r << 42)


# ----------------------------------------------------------------------------- value checks
def _ra_ok(ra: np.ndarray) -> np.ndarray:
    return np.isfinite(ra) & (ra >= RA_RANGE[0]) & (ra < RA_RANGE[1])


def _dec_ok(dec: np.ndarray) -> np.ndarray:
    return np.isfinite(dec) & (dec >= DEC_RANGE[0]) & (dec <= DEC_RANGE[1])


def coordinate_problem(ra: float, dec: float, names: tuple[str, str] = ("ra", "dec")
                       ) -> Problem | None:
    """A sky position must be finite, RA in [0, 360) and Dec in [-90, 90] degrees."""
    ra, dec = float(ra), float(dec)
    if not _ra_ok(ra):
        return names[0], f"bad coordinates: {names[0]} = {ra!r}, expected finite in [0, 360)"
    if not _dec_ok(dec):
        return names[1], f"bad coordinates: {names[1]} = {dec!r}, expected in [-90, 90]"
    return None


def check_coordinates(path: str | Path, ra: np.ndarray, dec: np.ndarray, rows: np.ndarray,
                      ids: np.ndarray, rejects: RejectLog,
                      names: tuple[str, str] = ("ra", "dec")) -> np.ndarray:
    """Keep-mask of a whole column of positions (vectorised :func:`coordinate_problem`)."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    ok = _ra_ok(ra) & _dec_ok(dec)
    problems = [None if ok[i] else coordinate_problem(ra[i], dec[i], names)
                for i in range(len(ok))]
    return reject_rows(path, problems, rows, ids, rejects)


def redshift_problem(z: float, name: str = "redshift") -> Problem | None:
    """A redshift must be finite and inside :data:`REDSHIFT_RANGE`."""
    z, (lo, hi) = float(z), REDSHIFT_RANGE
    if not (np.isfinite(z) and lo <= z <= hi):
        return name, f"bad redshift: {name} = {z!r}, expected finite in [{lo:g}, {hi:g}]"
    return None


def range_problem(name: str, value: float, lo: float, hi: float, category: str
                  ) -> Problem | None:
    """A scalar must be finite and in [lo, hi]."""
    value = float(value)
    if not (np.isfinite(value) and lo <= value <= hi):
        return name, f"{category}: {name} = {value!r}, expected finite in [{lo:g}, {hi:g}]"
    return None


def _bad_data(name: str, detail: str) -> Problem:
    return name, f"bad data: {name}: {detail}"


def ivar_problem(ivar: np.ndarray, name: str, limit: float = IVAR_LIMIT) -> Problem | None:
    """Inverse variances must be finite and in [0, limit]."""
    if not np.all(np.isfinite(ivar)):
        return _bad_data(name, f"{int((~np.isfinite(ivar)).sum())} non-finite pixels")
    if (ivar < 0).any():
        return _bad_data(name, f"{int((ivar < 0).sum())} negative pixels")
    if (ivar > limit).any():
        return _bad_data(name, f"{int((ivar > limit).sum())} pixels above {limit:g}")
    return None


def spectrum_problem(flux: np.ndarray, ivar: np.ndarray, used: np.ndarray,
                     names: tuple[str, str] = ("spectrum_flux", "spectrum_ivar")
                     ) -> Problem | None:
    """One spectrum: ivar as :func:`ivar_problem`; the ``used`` (unmasked) flux pixels finite
    with |flux| <= :data:`FLUX_LIMIT`."""
    if problem := ivar_problem(ivar, names[1]):
        return problem
    f = flux[used]
    if not np.all(np.isfinite(f)):
        return _bad_data(names[0], f"{int((~np.isfinite(f)).sum())} non-finite unmasked pixels")
    if (np.abs(f) > FLUX_LIMIT).any():
        return _bad_data(names[0], f"{int((np.abs(f) > FLUX_LIMIT).sum())} unmasked pixels "
                         f"beyond +-{FLUX_LIMIT:g}")
    return None


def image_problem(image: np.ndarray, name: str = "image", ivar: np.ndarray | None = None,
                  ivar_name: str = "image_ivar") -> Problem | None:
    """One image: pixels finite with |pixel| <= :data:`IMAGE_LIMIT` nanomaggies; its ivar,
    if any, finite in [0, :data:`IMAGE_IVAR_LIMIT`]."""
    if not np.all(np.isfinite(image)):
        return _bad_data(name, f"{int((~np.isfinite(image)).sum())} non-finite pixels")
    if (np.abs(image) > IMAGE_LIMIT).any():
        return _bad_data(name, f"{int((np.abs(image) > IMAGE_LIMIT).sum())} pixels beyond "
                         f"+-{IMAGE_LIMIT:g} nanomaggies")
    return ivar_problem(ivar, ivar_name, IMAGE_IVAR_LIMIT) if ivar is not None else None


def reject_rows(path: str | Path, problems: list[Problem | None], rows: np.ndarray,
                ids: np.ndarray | list, rejects: RejectLog) -> np.ndarray:
    """Keep-mask over ``rows``: each problem becomes a reject naming file, field, row and
    object id (a ReaderError when ``rejects`` is strict)."""
    keep = np.ones(len(problems), bool)
    for i, problem in enumerate(problems):
        if problem:
            keep[i] = False
            oid = ids[i].decode() if isinstance(ids[i], bytes) else ids[i]
            rejects.add(path, problem[0], problem[1], int(rows[i]),
                        oid.item() if isinstance(oid, np.generic) else oid)
    return keep


def numeric_column(path: str | Path, field: str, values: np.ndarray, ndim: int | None = 1
                   ) -> np.ndarray:
    """A whole column must be numeric (with ``ndim`` axes): otherwise the file is wrong."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf" or ndim not in (None, values.ndim):
        raise ReaderError(path, field, f"dtype {values.dtype}, {values.ndim} axes; expected a "
                          f"numeric column with {ndim}")
    return values


# ----------------------------------------------------------------------------- images
def fit_image_size(cube: np.ndarray, size: int = C.IMAGE_SIZE) -> tuple[np.ndarray, bool]:
    """Centre-crop or zero-pad a (bands, H, W) cube to (bands, size, size); flag if changed."""
    bands, h, w = cube.shape
    if (h, w) == (size, size):
        return cube, False
    out = np.zeros((bands, size, size), dtype=cube.dtype)
    # source and destination windows along one axis, centres aligned
    def window(n: int) -> tuple[slice, slice]:
        if n >= size:
            start = (n - size) // 2
            return slice(start, start + size), slice(0, size)
        start = (size - n) // 2
        return slice(0, n), slice(start, start + n)
    (sy, dy), (sx, dx) = window(h), window(w)
    out[:, dy, dx] = cube[:, sy, sx]
    return out, True


def select_bands(path: str | Path, field: str, names: list[str], cube: np.ndarray,
                 wanted: tuple[str, ...] = C.BANDS) -> np.ndarray:
    """Reorder a (bands, H, W) cube to ``wanted`` using the band names read from the file.

    Names are compared case-insensitively after dropping a survey prefix ('des-g' -> 'g').
    """
    norm = [str(n).strip().lower().split("-")[-1] for n in names]
    if len(norm) != cube.shape[0]:
        raise ReaderError(path, field, f"{len(norm)} band names {names} for {cube.shape[0]} planes")
    missing = [b for b in wanted if b not in norm]
    if missing:
        raise ReaderError(path, field, f"band(s) {missing} missing; file has {names}")
    return cube[[norm.index(b) for b in wanted]]


def lookup_sorted(sorted_ids: np.ndarray, order: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row index (``order[pos]``) of each query id in ``sorted_ids``; -1 where absent."""
    t = np.asarray(query, np.int64)
    if not len(sorted_ids):
        return np.full(len(t), -1)
    pos = np.clip(np.searchsorted(sorted_ids, t), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == t, order[pos], -1)


def iter_chunks(n: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, chunk):
        yield start, min(n, start + chunk)
