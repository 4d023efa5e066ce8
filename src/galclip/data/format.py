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
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from galclip import conventions as C

FORMAT_NAME = "galclip-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
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


class DatasetError(ValueError):
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
def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read in 4 MiB blocks (the checksum recorded in every manifest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` so that readers see either the old or the new file, never a mix."""
    path = Path(path)
    tmp = _atomic_path(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


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
    tmp = _atomic_path(path)
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd",
                   compression_level=1, use_byte_stream_split=_float_columns(table.schema))
    os.replace(tmp, path)
    return {"file": path.name, "n_rows": table.num_rows, "sha256": sha256_file(path),
            "bytes": path.stat().st_size}


def _float_columns(schema: pa.Schema) -> list[str]:
    """Float columns, stored with byte-stream-split encoding (better compression of floats)."""
    out = []
    for f in schema:
        t = f.type.value_type if pa.types.is_fixed_size_list(f.type) else f.type
        if pa.types.is_floating(t):
            out.append(f.name)
    return out


def column_schema(path: Path) -> dict[str, dict[str, Any]]:
    """Per-column dtype and per-row shape, read from a shard's Arrow schema."""
    out = {}
    for f in pq.read_schema(path):
        if pa.types.is_fixed_size_list(f.type):
            shape = json.loads((f.metadata or {}).get(b"shape", b"null")) or [f.type.list_size]
            out[f.name] = {"dtype": str(f.type.value_type.to_pandas_dtype().__name__),
                           "shape": list(shape)}
        elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            out[f.name] = {"dtype": "string", "shape": []}
        else:
            out[f.name] = {"dtype": np.dtype(f.type.to_pandas_dtype()).name, "shape": []}
    return out


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
    if not shards:
        raise DatasetError(f"{out_dir}: refusing to write a manifest with no shards")
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_rows": int(sum(s["n_rows"] for s in shards)),
        "shards": shards,
        "columns": column_schema(out_dir / shards[0]["file"]),
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
    if not mpath.exists():
        raise DatasetError(f"{mpath}: no manifest; is {mpath.parent} a galclip dataset folder?")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{mpath}: not valid JSON ({e})") from e
    for key in ("format", "version", "n_rows", "shards", "columns"):
        if key not in manifest:
            raise DatasetError(f"{mpath}: missing field '{key}'")
    if manifest["format"] != FORMAT_NAME:
        raise DatasetError(f"{mpath}: field 'format' is {manifest['format']!r}, "
                           f"expected {FORMAT_NAME!r}")
    if int(manifest["version"]) > FORMAT_VERSION:
        raise DatasetError(f"{mpath}: format version {manifest['version']} is newer than this "
                           f"galclip reads ({FORMAT_VERSION}); upgrade galclip")
    return manifest


def validate_dataset(path: Path, verify_checksums: bool = True,
                     required: Iterable[str] = tuple(REQUIRED_COLUMNS)) -> dict[str, Any]:
    """Check a dataset folder: manifest, every shard present, checksums, columns and shapes."""
    path = Path(path)
    manifest = read_manifest(path)
    _check_columns(path / MANIFEST, manifest["columns"], required)
    total = 0
    for entry in manifest["shards"]:
        total += _check_shard(path, entry, manifest["columns"], verify_checksums)
    if total != manifest["n_rows"]:
        raise DatasetError(f"{path / MANIFEST}: field 'n_rows' is {manifest['n_rows']} but the "
                           f"shards hold {total} rows")
    return manifest


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
    spath = path / entry["file"]
    if not spath.exists():
        raise DatasetError(f"{spath}: shard listed in the manifest is missing")
    if verify_checksums and sha256_file(spath) != entry["sha256"]:
        raise DatasetError(f"{spath}: sha256 does not match the manifest (file changed or "
                           f"corrupt)")
    try:
        meta = pq.read_metadata(spath)
        schema = column_schema(spath)
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{spath}: not a readable Parquet file ({e})") from e
    if meta.num_rows != entry["n_rows"]:
        raise DatasetError(f"{spath}: holds {meta.num_rows} rows, manifest says {entry['n_rows']}")
    for name, spec in columns.items():
        if name not in schema:
            raise DatasetError(f"{spath}: column '{name}' is missing")
        if schema[name]["shape"] != list(spec["shape"]):
            raise DatasetError(f"{spath}: column '{name}' has shape {schema[name]['shape']}, "
                               f"manifest says {spec['shape']}")
    return meta.num_rows
