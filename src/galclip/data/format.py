"""The galclip dataset format: a folder with ``manifest.json`` and Parquet shards.

One row per galaxy. Array columns (``image`` (3, 152, 152), ``spectrum_flux`` (7781,), ...)
are stored as Arrow ``FixedSizeList<float32>`` of the flattened array, with the array shape
in the Arrow field metadata (key ``shape``) and in the manifest, so a reader rebuilds the
shape without guessing and can stream record batches without copying.

Every file is written atomically (temporary name, then ``os.replace``), so a killed writer
never leaves a half-written shard or manifest behind.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from galclip import conventions as C
from galclip import storage
from galclip.storage import (  # noqa: F401 - the storage layer's names, as the dataset format uses them
    MANIFEST,
    column_schema,
    remove_stale_temporaries,
    sha256_file,
    write_json_atomic,
)

FORMAT_NAME = "galclip-dataset"
FORMAT_VERSION = 1
ROW_GROUP_SIZE = 32

#: Columns every galclip dataset has, with dtype and per-row shape.
REQUIRED_COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    "object_id": ("int64", ()),
    "ra": ("float64", ()),
    "dec": ("float64", ()),
    "redshift": ("float32", ()),
    "image": ("float32", C.IMAGE_SHAPE),
    "spectrum_flux": ("float32", (C.N_WAVE,)),
    "spectrum_ivar": ("float32", (C.N_WAVE,)),
}
#: Optional columns whose shape is fixed by the conventions when present.
KNOWN_SHAPES: dict[str, tuple[int, ...]] = {"image_ivar": C.IMAGE_SHAPE}


class DatasetError(storage.StorageError):
    """A dataset folder or a file in it is invalid; the message names the file and field."""


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def conventions_dict() -> dict[str, Any]:
    """The image and spectrum conventions recorded in every manifest."""
    return {
        "image": {"bands": list(C.BANDS), "shape": list(C.IMAGE_SHAPE), "layout": "(band, y, x)",
                  "pixel_scale_arcsec": C.PIXEL_SCALE_ARCSEC, "unit": C.IMAGE_UNIT},
        "spectrum": {"wave_min_angstrom": C.WAVE_MIN, "wave_step_angstrom": C.WAVE_STEP,
                     "n_pixels": C.N_WAVE, "unit": C.SPECTRUM_UNIT,
                     "ivar": "inverse variance of flux; 0 marks a bad pixel"},
    }


# ----------------------------------------------------------------------------- writing
def _to_arrow(name: str, values: Any) -> tuple[pa.Field, pa.Array]:
    """Convert one column (numpy array, first axis = rows) to an Arrow field and array.

    A numpy masked array stores a null row wherever a whole row is masked (e.g. the image of
    a galaxy that has only a spectrum); readers get NaN rows back.
    """
    null_rows = None
    if isinstance(values, np.ma.MaskedArray):
        m = np.ma.getmaskarray(values)
        null_rows = m.reshape(len(m), -1).all(axis=1)
        values = values.filled(0) if values.dtype.kind in "fiub" else values.data
    arr = np.asarray(values)
    if arr.ndim == 1 and arr.dtype.kind in "OUS":
        return pa.field(name, pa.string()), pa.array([None if v is None else str(v) for v in arr])
    if arr.ndim == 1:
        a = pa.array(arr, mask=null_rows)
        return pa.field(name, a.type), a
    shape = tuple(int(s) for s in arr.shape[1:])
    flat = np.ascontiguousarray(arr).reshape(len(arr), -1)
    inner = pa.array(flat.reshape(-1))
    a = pa.FixedSizeListArray.from_arrays(inner, int(np.prod(shape)), mask=None if null_rows
                                          is None else pa.array(null_rows))
    meta = {b"shape": json.dumps(list(shape)).encode()}
    return pa.field(name, a.type, metadata=meta), a


def write_shard(path: Path, columns: Mapping[str, Any]) -> dict[str, Any]:
    """Write one Parquet shard atomically; returns its manifest entry (file, rows, sha256)."""
    path = Path(path)
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{path}: columns have different row counts: {lengths}")
    fields, arrays = zip(*(_to_arrow(k, v) for k, v in columns.items()), strict=True)
    table = pa.Table.from_arrays(list(arrays), schema=pa.schema(list(fields)))
    return storage.write_parquet(path, table, ROW_GROUP_SIZE)


@dataclass
class Provenance:
    """How a dataset was produced: recorded in its manifest."""

    command: str
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)


def write_manifest(out_dir: Path, shards: list[dict[str, Any]], provenance: Provenance,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``manifest.json`` for finished shards (atomically) and return it."""
    from galclip import __version__

    out_dir = Path(out_dir)
    manifest = {
        **storage.base_manifest(FORMAT_NAME, FORMAT_VERSION, out_dir, shards),
        "conventions": conventions_dict(),
        "provenance": {**provenance.__dict__, "galclip_version": __version__,
                       "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
        **dict(extra or {}),
    }
    write_json_atomic(out_dir / MANIFEST, manifest)
    return manifest


# ----------------------------------------------------------------------------- validation
def read_manifest(path: Path) -> dict[str, Any]:
    """Read and check a dataset's manifest (format name, version, shard list)."""
    path = Path(path)
    mpath = path / MANIFEST if path.is_dir() or not path.suffix else path
    manifest = storage.load_manifest_json(mpath, DatasetError,
                                          f"; is {mpath.parent} a galclip dataset folder?")
    for key in ("format", "version", "n_rows", "shards", "columns"):
        if key not in manifest:
            raise DatasetError(f"{mpath}: missing field '{key}'")
    if manifest["format"] != FORMAT_NAME:
        raise DatasetError(f"{mpath}: field 'format' is {manifest['format']!r}, "
                           f"expected {FORMAT_NAME!r}")
    _expect(mpath, "version", manifest["version"], int)
    _expect(mpath, "n_rows", manifest["n_rows"], int)
    if manifest["version"] > FORMAT_VERSION:
        raise DatasetError(f"{mpath}: format version {manifest['version']} is newer than this "
                           f"galclip reads ({FORMAT_VERSION}); upgrade galclip")
    _check_shard_entries(mpath, manifest["shards"])
    _expect(mpath, "columns", manifest["columns"], dict)
    for name, spec in manifest["columns"].items():
        _expect(mpath, f"columns.{name}", spec, dict)
        shape = spec.get("shape")
        if not (isinstance(shape, list) and all(type(d) is int and d > 0 for d in shape)):
            raise DatasetError(f"{mpath}: field 'columns.{name}.shape' is {shape!r}, expected a "
                               "list of positive integers")
    return manifest


def _expect(mpath: Path, field_name: str, value: Any, kind: type) -> None:
    if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
        want = "a non-negative integer" if kind is int else f"a JSON {_JSON_NAMES[kind]}"
        raise DatasetError(f"{mpath}: field '{field_name}' is {value!r:.80}, expected {want}")


_JSON_NAMES = {dict: "object", list: "list", str: "string", int: "integer"}
_SHARD_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\.parquet")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_shard_entries(mpath: Path, shards: Any) -> None:
    """Shards: a non-empty list of {file, n_rows, sha256}; each file a plain name inside the
    dataset folder (never a path: nothing outside the folder is opened), listed once."""
    _expect(mpath, "shards", shards, list)
    if not shards:
        raise DatasetError(f"{mpath}: field 'shards' is empty")
    seen: set[str] = set()
    for i, entry in enumerate(shards):
        where = f"shards[{i}]"
        _expect(mpath, where, entry, dict)
        for key, kind in (("file", str), ("n_rows", int), ("sha256", str)):
            if key not in entry:
                raise DatasetError(f"{mpath}: field '{where}.{key}' is missing")
            _expect(mpath, f"{where}.{key}", entry[key], kind)
        if not _SHARD_FILE.fullmatch(entry["file"]):
            raise DatasetError(f"{mpath}: field '{where}.file' is {entry['file']!r:.80}; a shard "
                               "is a .parquet file name inside the dataset folder, not a path")
        if not _SHA256.fullmatch(entry["sha256"]):
            raise DatasetError(f"{mpath}: field '{where}.sha256' is not a 64-digit hex sha256")
        if entry["file"] in seen:
            raise DatasetError(f"{mpath}: field '{where}.file': {entry['file']} is listed twice")
        seen.add(entry["file"])


def validate_dataset(path: Path, verify_checksums: bool = True,
                     required: Iterable[str] = tuple(REQUIRED_COLUMNS),
                     content: bool = False) -> dict[str, Any]:
    """Check a dataset folder: manifest, every shard present, checksums, columns and shapes;
    with ``content`` also the values (:func:`check_content`)."""
    path = Path(path)
    manifest = read_manifest(path)
    _check_columns(path / MANIFEST, manifest["columns"], required)
    total = 0
    for entry in manifest["shards"]:
        total += _check_shard(path, entry, manifest["columns"], verify_checksums)
    if total != manifest["n_rows"]:
        raise DatasetError(f"{path / MANIFEST}: field 'n_rows' is {manifest['n_rows']} but the "
                           f"shards hold {total} rows")
    if content:
        check_content(path, manifest)
    return manifest


#: scalar columns with a physical range (NaN allowed: a missing value)
RANGES = {"ra": (0.0, 360.0), "dec": (-90.0, 90.0), "redshift": (-0.01, 20.0)}
#: array columns that must be non-negative (inverse variances)
NON_NEGATIVE = ("spectrum_ivar", "image_ivar")


def check_content(path: Path, manifest: Mapping[str, Any], batch_rows: int = 256) -> None:
    """Values, not bytes: unique object ids; array rows either null (absent modality) or all
    finite (ivars >= 0); float labels finite or NaN (missing), never inf, ra/dec/redshift in
    range. The first problem is a DatasetError naming shard, column and row."""
    ids: list[np.ndarray] = []
    for entry in manifest["shards"]:
        spath = path / entry["file"]
        offset = 0
        for batch in pq.ParquetFile(spath).iter_batches(batch_size=batch_rows):
            for name in batch.schema.names:
                _check_values(spath, name, batch.column(name), offset)
            if "object_id" in batch.schema.names:
                ids.append(batch.column("object_id").to_numpy(zero_copy_only=False))
            offset += batch.num_rows
    _check_unique_ids(path, manifest, ids)


def _check_values(spath: Path, name: str, col: pa.Array, offset: int) -> None:
    if pa.types.is_fixed_size_list(col.type):
        if not pa.types.is_floating(col.type.value_type):
            return
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(valid)
        vals = col.filter(col.is_valid()).flatten().to_numpy(zero_copy_only=False)
        vals = vals.reshape(len(rows), col.type.list_size)  # a block may hold no valid row
        bad = ~np.isfinite(vals).all(axis=1)
        what = "non-finite values"
        if name in NON_NEGATIVE and not bad.any():
            bad, what = (vals < 0).any(axis=1), "negative values"
        if bad.any():
            r = int(rows[np.flatnonzero(bad)[0]])
            raise DatasetError(f"{spath}: column '{name}', row {offset + r}: {what} "
                               f"({int(bad.sum())} rows in this block)")
    elif pa.types.is_floating(col.type):
        vals = col.to_numpy(zero_copy_only=False).astype(np.float64)
        lo, hi = RANGES.get(name, (-np.inf, np.inf))
        bad = np.isinf(vals) | (np.isfinite(vals) & ((vals < lo) | (vals > hi)))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{spath}: column '{name}', row {offset + r}: value {float(vals[r])!r} "
                               f"(expected finite in [{lo:g}, {hi:g}] or NaN for missing)")


def _check_unique_ids(path: Path, manifest: Mapping[str, Any], ids: list[np.ndarray]) -> None:
    if not ids:
        return
    all_ids = np.concatenate(ids)
    uniq, first, counts = np.unique(all_ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise DatasetError(f"{path}: column 'object_id': {len(dup)} duplicate ids (first "
                           f"{int(dup[0])}, {int(counts[counts > 1][0])} times)")


def _check_columns(where: Path, columns: Mapping[str, Any], required: Iterable[str]) -> None:
    for name in required:
        if name not in columns:
            raise DatasetError(f"{where}: required column '{name}' is missing")
    for name, spec in columns.items():
        want = REQUIRED_COLUMNS.get(name, (None, KNOWN_SHAPES.get(name)))[1]
        if want is not None and tuple(spec["shape"]) != tuple(want):
            raise DatasetError(f"{where}: column '{name}' has shape {tuple(spec['shape'])}, "
                               f"expected {tuple(want)}")


def _check_shard(path: Path, entry: Mapping[str, Any], columns: Mapping[str, Any],
                 verify_checksums: bool) -> int:
    """Size, row count and schema of one shard (footer only); its sha256 with ``verify_checksums``."""
    spath = path / entry["file"]
    try:
        meta = storage.check_shard(spath, entry, verify_checksums)
        schema = column_schema(spath)
    except storage.StorageError as e:
        raise DatasetError(str(e)) from e
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{spath}: not a readable Parquet file ({e})") from e
    for name, spec in columns.items():
        if name not in schema:
            raise DatasetError(f"{spath}: column '{name}' is missing")
        if schema[name]["shape"] != list(spec["shape"]):
            raise DatasetError(f"{spath}: column '{name}' has shape {schema[name]['shape']}, "
                               f"manifest says {spec['shape']}")
    return meta.num_rows
