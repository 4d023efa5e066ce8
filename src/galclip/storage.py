"""galclip's one storage layer: a folder of Parquet shards described by ``manifest.json``.

Datasets (:mod:`galclip.data.format`) and embedding catalogs (:mod:`galclip.search.catalog`) are
the same kind of thing, and both are written and read through this module:

- **atomic writes** -- :func:`atomic_write` (a temporary ``.NAME.tmp-PID`` beside the target,
  then ``os.replace``), :func:`write_json_atomic`, and :func:`remove_stale_temporaries` for the
  temporaries a killed writer left behind. Readers see the old file or the new one, never a mix;
  a writer that fails (full disk, read-only folder) leaves neither a temporary nor half a file,
  and its ``OSError`` names the file (:func:`with_path`).
- **shards** -- :func:`write_parquet` writes one table atomically and returns its manifest entry
  ``{file, n_rows, sha256, bytes}`` (:func:`shard_entry` makes the entry of a file on disk).
- **manifests** -- :func:`base_manifest` holds the fields every manifest shares (``format``,
  ``version``, ``n_rows``, ``shards``, ``columns``); :func:`load_manifest_json` reads one back.
- **row-range reads** -- :func:`iter_row_groups` / :func:`read_rows` read rows ``[start, stop)``
  touching only the Parquet row groups that hold them.
- **fingerprints** -- :func:`sha256_file` (the checksum in every shard entry; hashing every byte
  is :func:`check_shard`'s job on request, never an open's) and :func:`fingerprint`, the
  content identity of a manifest's shards, computed from the manifest alone.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "manifest.json"


class StorageError(ValueError):
    """A manifest or shard is invalid; the message names the file and field."""


# ----------------------------------------------------------------------------- atomic writes
def atomic_path(path: Path) -> Path:
    """The temporary name a writer of ``path`` uses before renaming it into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_write(path: str | Path, size: int | None = None) -> Iterator[Path]:
    """``with atomic_write(p) as tmp: write(tmp)``: ``tmp`` replaces ``p`` when the block ends
    without an error, and is deleted when it raises. An ``OSError`` (a full disk, a read-only
    or forbidden folder) leaves with ``p`` as its ``filename`` and its ``errno`` set, which
    libraries such as pyarrow leave out: the CLI turns it into one line that names the path.
    A full disk's error also carries ``space`` (:func:`space_note`): what the file needs
    (``size``, the writer's estimate in bytes, when it gave one) and what was free when the
    write began (measured then: a writer that failed may still hold its deleted temporary open)."""
    path = Path(path)
    tmp = atomic_path(path)
    free = free_bytes(path.parent)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as e:                   # OSError, or a library's error that carries one
        named = with_path(e, path)
        if not isinstance(named, OSError):
            raise
        if named.errno in (errno.ENOSPC, errno.EDQUOT):
            named.space = space_note(path, size, free)
        if named is e:
            raise
        raise named from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system that holds ``path`` (or its nearest existing folder)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p):
        p = p.parent
    return p


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free to this user on the file system that holds ``folder`` (None if unknown)."""
    try:
        st = os.statvfs(mount_point(folder))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def human_bytes(n: float) -> str:
    """``"12.0 MB"``, ``"1.5 GB"``, ``"640 kB"``."""
    return (f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e6 else
            f"{n / 1e3:.0f} kB")


def space_note(path: str | Path, size: int | None = None, free: int | None = None) -> str:
    """``"needs about 12.0 MB, 400 kB free on /data"`` for a file written to ``path`` (without
    the first part when its ``size`` is not known); ``free`` measured now unless given."""
    mount = mount_point(Path(path).parent)
    free = free_bytes(mount) if free is None else free
    room = f"{human_bytes(free)} free on {mount}" if free is not None else f"free space on {mount} unknown"
    return f"needs about {human_bytes(size)}, {room}" if size else room


_ERRNO = re.compile(r"\[Errno (\d+)\]|(?:errno|os error)[ =:]+(\d+)", re.IGNORECASE)


def with_path(e: Exception, path: str | Path) -> Exception:
    """``e`` itself if it names a file, else the same error as an ``OSError`` naming ``path``
    (its errno read from the message when the raiser left it out, as pyarrow and safetensors
    do; an error with no errno at all is returned as it is)."""
    if getattr(e, "filename", None):
        return e
    code = getattr(e, "errno", None)
    if code is None and (m := _ERRNO.search(str(e))):
        code = int(m.group(1) or m.group(2))
    if code is None:
        return e
    return OSError(code, os.strerror(code), str(path))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` so that readers see either the old or the new file, never a mix."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


_TMP_NAME = re.compile(r"\..+\.tmp-(\d+)(?:\.\w+)?")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.NAME.tmp-PID`` files that killed writers left in ``folder`` (those whose
    process is gone, or is this one); returns what was removed."""
    removed = []
    for f in Path(folder).iterdir() if Path(folder).is_dir() else ():
        m = _TMP_NAME.fullmatch(f.name)
        if m and f.is_file() and (int(m.group(1)) == os.getpid() or
                                  not _pid_alive(int(m.group(1)))):
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


# ----------------------------------------------------------------------------- shards
def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read in 4 MiB blocks (the checksum recorded in every shard entry)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def shard_entry(path: Path, root: Path | None = None, n_rows: int | None = None) -> dict[str, Any]:
    """The manifest entry of a shard on disk: ``file`` (relative to ``root``, default the
    shard's folder), ``n_rows`` (read from its footer unless given), ``sha256``, ``bytes``."""
    path = Path(path)
    rows = pq.read_metadata(path).num_rows if n_rows is None else int(n_rows)
    return {"file": path.relative_to(root or path.parent).as_posix(), "n_rows": rows,
            "sha256": sha256_file(path), "bytes": path.stat().st_size}


def float_columns(schema: pa.Schema) -> list[str]:
    """Float columns, stored with byte-stream-split encoding (better compression of floats)."""
    out = []
    for f in schema:
        t = f.type.value_type if pa.types.is_fixed_size_list(f.type) else f.type
        if pa.types.is_floating(t):
            out.append(f.name)
    return out


def write_parquet(path: Path, table: pa.Table, row_group_size: int,
                  root: Path | None = None) -> dict[str, Any]:
    """Write one shard atomically (zstd, byte-stream-split floats); returns its manifest entry
    with ``file`` relative to ``root`` (default: the shard's folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # its size in memory: about what the shard needs (zstd level 1 barely shrinks noisy floats)
    with atomic_write(path, size=table.nbytes) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd",
                       compression_level=1, use_byte_stream_split=float_columns(table.schema))
    return shard_entry(path, root, table.num_rows)


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


def check_shard(spath: Path, entry: Mapping[str, Any], checksums: bool = False) -> pq.FileMetaData:
    """A shard exists, has the recorded size and row count (read from its footer) and, with
    ``checksums``, the recorded sha256 (every byte read); returns its Parquet metadata."""
    if not spath.is_file():
        raise StorageError(f"{spath}: shard listed in the manifest is missing (or not a file)")
    size = entry.get("bytes")
    if isinstance(size, int) and spath.stat().st_size != size:
        raise StorageError(f"{spath}: holds {spath.stat().st_size} bytes, manifest says {size} "
                           "(file changed or truncated)")
    if checksums and sha256_file(spath) != entry["sha256"]:
        raise StorageError(f"{spath}: sha256 does not match the manifest (file changed or corrupt)")
    try:
        meta = pq.read_metadata(spath)
    except (pa.ArrowException, OSError) as e:
        raise StorageError(f"{spath}: not a readable Parquet file ({e})") from e
    if meta.num_rows != entry["n_rows"]:
        raise StorageError(f"{spath}: holds {meta.num_rows} rows, manifest says {entry['n_rows']}")
    return meta


# ----------------------------------------------------------------------------- manifests
def base_manifest(fmt: str, version: int, root: Path, shards: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    """The fields every manifest has: ``format``, ``version``, ``n_rows``, ``shards`` and
    ``columns`` (dtype and per-row shape, read from the first shard's schema)."""
    if not shards:
        raise StorageError(f"{root}: refusing to write a manifest with no shards")
    return {"format": fmt, "version": version, "n_rows": int(sum(s["n_rows"] for s in shards)),
            "shards": shards, "columns": column_schema(Path(root) / shards[0]["file"])}


def load_manifest_json(mpath: Path, error: type[Exception] = StorageError, hint: str = ""
                       ) -> dict[str, Any]:
    """The JSON object in ``mpath``; a missing file, bad JSON or a non-object is ``error``."""
    if not mpath.is_file():
        raise error(f"{mpath}: no manifest{hint}")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise error(f"{mpath}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise error(f"{mpath}: not a JSON object")
    return manifest


def fingerprint(shards: Sequence[Mapping[str, Any]]) -> str:
    """The content identity of a dataset or catalog: sha256 of its manifest's shard entries
    (their checksums, sizes and row counts). Read from the manifest, no shard is opened; two
    folders with other rows have other fingerprints."""
    return hashlib.sha256(json.dumps(list(shards), sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- row ranges
def shard_offsets(shards: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """(S + 1,) first row of each shard, then the total number of rows."""
    return np.cumsum([0] + [int(s["n_rows"]) for s in shards])


def _row_group_spans(root: Path, shards: Sequence[Mapping[str, Any]], start: int, stop: int
                     ) -> Iterator[tuple[pq.ParquetFile, int, int, int]]:
    """``(file, group, first row of the group, its rows)`` of every row group that holds a row
    of ``[start, stop)``, in order; shards outside the range are never opened."""
    offsets = shard_offsets(shards)
    for i, s in enumerate(shards):
        if max(start, int(offsets[i])) >= min(stop, int(offsets[i + 1])):
            continue
        f = pq.ParquetFile(Path(root) / s["file"])
        rg_start = int(offsets[i])
        for g in range(f.num_row_groups):
            n = f.metadata.row_group(g).num_rows
            if max(start, rg_start) < min(stop, rg_start + n):
                yield f, g, rg_start, n
            rg_start += n


def iter_row_groups(root: Path, shards: Sequence[Mapping[str, Any]], columns: Sequence[str] | None,
                    start: int = 0, stop: int | None = None) -> Iterator[pa.Table]:
    """Rows ``[start, stop)`` (default: all) as Arrow tables, one per Parquet row group they
    span, in order; row groups outside the range are never read."""
    stop = int(shard_offsets(shards)[-1]) if stop is None else stop
    cols = list(columns) if columns is not None else None
    for f, g, first, n in _row_group_spans(root, shards, start, stop):
        a, b = max(start, first), min(stop, first + n)
        yield f.read_row_group(g, columns=cols).slice(a - first, b - a)


def read_rows(root: Path, shards: Sequence[Mapping[str, Any]], columns: Sequence[str] | None,
              start: int = 0, stop: int | None = None) -> pa.Table:
    """Rows ``[start, stop)`` (default: all) of some columns as one Arrow table."""
    parts = list(iter_row_groups(root, shards, columns, start, stop))
    if not parts:
        raise StorageError(f"{root}: no rows in [{start}, {stop})")
    return pa.concat_tables(parts)


def take_rows(root: Path, shards: Sequence[Mapping[str, Any]], columns: Sequence[str],
              rows: np.ndarray) -> pa.Table:
    """The given rows (increasing row numbers) of some columns, in that order, reading only
    the row groups that hold them."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0 or (np.diff(rows) <= 0).any() or rows[0] < 0:
        raise ValueError(f"{root}: rows to read must be increasing non-negative row numbers")
    parts = []
    for f, g, first, n in _row_group_spans(root, shards, int(rows[0]), int(rows[-1]) + 1):
        lo, hi = np.searchsorted(rows, [first, first + n])
        if hi > lo:
            parts.append(f.read_row_group(g, columns=list(columns)).take(pa.array(rows[lo:hi] - first)))
    if sum(p.num_rows for p in parts) != len(rows):
        raise StorageError(f"{root}: row {int(rows[-1])} is beyond its {shard_offsets(shards)[-1]} rows")
    return pa.concat_tables(parts)
