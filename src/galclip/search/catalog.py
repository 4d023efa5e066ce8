"""Embedding catalogs: every galaxy of a dataset with its image and spectrum embeddings.

A catalog is a folder with ``manifest.json`` and Parquet shards, one row per galaxy of the
dataset, in the dataset's order: ``object_id``, ``ra``, ``dec``, ``redshift``, chosen scalar
metadata columns, and ``image_embedding`` / ``spectrum_embedding`` as Arrow
``FixedSizeList<float32>[E]`` (null where a galaxy lacks that modality, e.g. ``has_image`` is
false). The manifest records the sha256 of the model checkpoint, so a catalog made with another
model is detected as stale, and the dataset's manifest hash.

Embedding goes through the shared inference function
``galclip.models.inference.iter_embeddings`` (eval mode, no grad, no dropped rows). The work is
split into fixed row ranges, one shard each, written atomically: a killed run resumes at the
first missing shard and ends with the same catalog as an uninterrupted run.

Under ``torchrun`` (or SLURM / Lightning, anything that sets ``RANK`` and ``WORLD_SIZE``) each
of N ranks embeds shards ``i`` with ``i % N == rank`` and writes them itself; the shard
boundaries do not depend on N, so the shards, and the manifest rank 0 writes once every shard
exists, are the same as a one-process run's. The ranks meet at ``torch.distributed`` barriers
(gloo on CPU, nccl on GPU); the catalog folder must be on a filesystem all ranks see.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from galclip import storage
from galclip.data.format import DatasetError
from galclip.modalities import BATCH_SIZE
from galclip.modalities import MODALITIES as _REGISTRY
from galclip.modalities import NAMES as MODALITIES
from galclip.modalities import get as get_modality
from galclip.resume import ResumeState
from galclip.storage import MANIFEST, remove_stale_temporaries, sha256_file, write_json_atomic

CATALOG_FORMAT = "galclip-catalog"
CATALOG_VERSION = 1
BASE_COLUMNS: tuple[str, ...] = ("object_id", "ra", "dec", "redshift")
PLAN = ".embed-plan.json"
SHARD_DIR = "shards"
ROWS_PER_SHARD = 4096
CATALOG_ROW_GROUP = 1024
#: modality -> dataset columns its encoder reads, and the optional per-row presence flag
MODALITY_INPUTS = {m.name: m.inputs for m in _REGISTRY.values()}
PRESENCE = {m.name: m.presence for m in _REGISTRY.values()}


class CatalogError(DatasetError):
    """A catalog folder is invalid, stale or inconsistent; the message names file and field."""


def embedding_column(modality: str) -> str:
    return get_modality(modality).embedding_column


def file_sha256(path: str | Path) -> str:
    """The identity of a model checkpoint (or any file): sha256 of its bytes."""
    return sha256_file(Path(path))


def catalog_shard_name(index: int) -> str:
    """Shard path relative to the catalog folder: the folder ``shards/`` holds only Parquet, so
    pandas, polars, DuckDB and pyarrow read it whole as one table."""
    return f"{SHARD_DIR}/emb-{index:05d}.parquet"


# ----------------------------------------------------------------------------- row ranges
class RowRange:
    """A contiguous slice of rows of a dataset, with the same reading surface as the dataset.

    Passed to ``iter_embeddings`` so each catalog shard is embedded on its own.
    """

    def __init__(self, dataset, start: int, stop: int):
        self.dataset, self.start, self.stop = dataset, int(start), int(stop)
        self.manifest = dataset.manifest
        self.columns = dataset.columns
        self.path = dataset.path

    def __len__(self) -> int:
        return self.stop - self.start

    def row_range(self, lo: int, hi: int) -> RowRange:
        """Rows [lo, hi) of this range (what DataLoader workers read, one batch each)."""
        return RowRange(self.dataset, self.start + lo, self.start + hi)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for rows [{self.start}, {self.stop})")
        return self.dataset[self.start + i]

    def shape(self, column: str) -> tuple[int, ...]:
        return self.dataset.shape(column)

    def iter_batches(self, batch_size: int = 64, columns: Sequence[str] | None = None
                     ) -> Iterator[dict[str, np.ndarray]]:
        """Stream rows [start, stop) in order, reading only the Parquet row groups they span."""
        cols = list(columns) if columns else list(self.columns)
        pending: list[pa.Table] = []
        n_pending = 0
        for table in self._tables(cols):
            pending.append(table)
            n_pending += table.num_rows
            while n_pending >= batch_size:
                merged = pa.concat_tables(pending)
                yield self._to_numpy(merged.slice(0, batch_size), cols)
                pending, n_pending = [merged.slice(batch_size)], n_pending - batch_size
        if n_pending:
            yield self._to_numpy(pa.concat_tables(pending), cols)

    def _tables(self, cols: list[str]) -> Iterator[pa.Table]:
        return storage.iter_row_groups(self.path, self.manifest["shards"], cols, self.start, self.stop)

    def _to_numpy(self, table: pa.Table, cols: list[str]) -> dict[str, np.ndarray]:
        from galclip.data.dataset import column_to_numpy

        return {c: column_to_numpy(table.column(c), self.shape(c)) for c in cols}


# ----------------------------------------------------------------------------- planning
def _scalar_columns(manifest: dict[str, Any]) -> list[str]:
    return [c for c, spec in manifest["columns"].items() if not spec["shape"]]


def choose_columns(manifest: dict[str, Any], columns: Sequence[str] | None,
                   where: str = "dataset manifest") -> list[str]:
    """Metadata columns copied into the catalog: the base four plus ``columns``
    (default: every scalar column of the dataset)."""
    scalar = _scalar_columns(manifest)
    wanted = list(columns) if columns is not None else scalar
    bad = [c for c in wanted if c not in scalar]
    if bad:
        raise CatalogError(f"{where}: column(s) {bad} are not scalar columns of the dataset; "
                           f"choose from {scalar}")
    return list(BASE_COLUMNS) + [c for c in wanted if c not in BASE_COLUMNS]


def available_modalities(manifest: dict[str, Any], modalities: Sequence[str]) -> list[str]:
    return [m for m in modalities if all(c in manifest["columns"] for c in MODALITY_INPUTS[m])]


def _plan(model_sha: str, dataset, columns: list[str], modalities: list[str],
          rows_per_shard: int) -> dict[str, Any]:
    n = len(dataset)
    bounds = [[lo, min(lo + rows_per_shard, n)] for lo in range(0, n, rows_per_shard)]
    return {"model_sha256": model_sha, "dataset_shards_sha256": dataset.fingerprint,
            "n_rows": n, "columns": columns, "modalities": modalities,
            "rows_per_shard": rows_per_shard, "ranges": bounds}


def _open_plan(out: Path, plan: dict[str, Any], overwrite: bool) -> ResumeState:
    """The embed run's resume state: refuse to mix shards made with other settings (model,
    dataset, columns) in one folder; ``overwrite`` clears the folder's catalog and starts again."""
    state = ResumeState.open(out / PLAN, "galclip embed", plan,
                             on_change="restart" if overwrite else "refuse",
                             hint="use --overwrite to start again", error=CatalogError)
    if overwrite:
        for f in list(out.glob(f"{SHARD_DIR}/emb-*.parquet")) + [out / MANIFEST] + list(out.glob("index-*")):
            f.unlink(missing_ok=True)
        state = ResumeState(out / PLAN, "galclip embed", state.inputs)
    if not state.complete:
        state.save()
    return state


def _finished_catalog(out: Path, state: ResumeState) -> dict[str, Any] | None:
    """The manifest of a catalog this plan already completed (a rerun is a no-op), else None."""
    if not (state.complete and (out / MANIFEST).exists()):
        return None
    try:
        return read_catalog_manifest(out)
    except CatalogError:  # a shard went missing: embed what is not there
        return None


# ----------------------------------------------------------------------------- writing
def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _embedding_array(vectors: np.ndarray, present: np.ndarray) -> pa.Array:
    """(N, E) float32 plus a presence mask -> FixedSizeList array with nulls where absent."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    values = pa.array(vectors.reshape(-1))
    mask = pa.array(~present.astype(bool))
    return pa.FixedSizeListArray.from_arrays(values, vectors.shape[1], mask=mask)


def write_table_atomic(path: Path, table: pa.Table, root: Path | None = None) -> dict[str, Any]:
    """Write a catalog shard atomically (``storage.write_parquet``, 1024-row groups); returns its
    manifest entry, with ``file`` relative to ``root`` (default: the file's folder)."""
    return storage.write_parquet(path, table, CATALOG_ROW_GROUP, root)


def _shard_table(meta: dict[str, np.ndarray], emb: dict[str, np.ndarray],
                 present: dict[str, np.ndarray], model_sha: str) -> pa.Table:
    fields, arrays = [], []
    for name, values in meta.items():
        a = pa.array(values)
        fields.append(pa.field(name, a.type))
        arrays.append(a)
    for m, vectors in emb.items():
        a = _embedding_array(vectors, present[m])
        fields.append(pa.field(embedding_column(m), a.type,
                               metadata={b"shape": json.dumps([vectors.shape[1]]).encode()}))
        arrays.append(a)
    schema = pa.schema(fields, metadata={b"galclip_model_sha256": model_sha.encode()})
    return pa.Table.from_arrays(arrays, schema=schema)


def _read_range(dataset, lo: int, hi: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Scalar columns of dataset rows [lo, hi), read from the row groups that hold them."""
    t = storage.read_rows(dataset.path, dataset.manifest["shards"], columns, lo, hi)
    return {c: t.column(c).to_numpy(zero_copy_only=False) for c in columns}


def _presence(meta_src: dict[str, np.ndarray], modalities: Sequence[str], n: int
              ) -> dict[str, np.ndarray]:
    return {m: (meta_src[PRESENCE[m]].astype(bool) if PRESENCE[m] in meta_src
                else np.ones(n, dtype=bool)) for m in modalities}


def embed_range(model, rows: RowRange, modalities: Sequence[str], batch_size: int,
                device, embed_fn: Callable, on_batch: Callable[[int], None] | None = None
                ) -> dict[str, Any]:
    """Embed rows through ``embed_fn`` (the ``iter_embeddings`` contract); arrays in row order."""
    ids, emb = [], {m: [] for m in modalities}
    for batch in embed_fn(model, rows, batch_size=batch_size, device=device,
                          modalities=tuple(modalities)):
        ids.append(_to_numpy(batch["object_id"]).astype(np.int64))
        for m in modalities:
            emb[m].append(_to_numpy(batch[embedding_column(m)]).astype(np.float32))
        if on_batch:
            on_batch(len(ids[-1]))
    return {"object_id": np.concatenate(ids), **{m: np.concatenate(v) for m, v in emb.items()}}


def _default_embed_fn(num_workers: int = 0) -> Callable:
    """``iter_embeddings`` (bf16 autocast on a GPU), decoding in ``num_workers`` processes."""
    import functools

    from galclip.models.inference import iter_embeddings

    return functools.partial(iter_embeddings, num_workers=num_workers)


def build_catalog(model, data_dir: str | Path, out_dir: str | Path, *, model_path: str | Path,
                  columns: Sequence[str] | None = None, modalities: Sequence[str] = MODALITIES,
                  batch_size: int = BATCH_SIZE, device=None, rows_per_shard: int = ROWS_PER_SHARD,
                  overwrite: bool = False, embed_fn: Callable | None = None,
                  progress: bool = True, max_shards: int | None = None,
                  num_workers: int = 0) -> dict[str, Any] | None:
    """Embed every row of a dataset into a catalog folder; resumable per shard.

    ``model`` must follow the CLIP model interface and ``model_path`` is its checkpoint (whose
    sha256 identifies the catalog's model). ``max_shards`` stops after that many new shards
    (returns None; rerun to continue). Returns the manifest once the catalog is complete.
    Under torchrun each rank embeds its share of the shards (see the module docstring);
    ``num_workers`` processes per rank decode the dataset ahead of the model.
    """
    from galclip.data import open_dataset

    dataset = open_dataset(data_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)          # left by a killed run
    model_sha = file_sha256(model_path)
    cols = choose_columns(dataset.manifest, columns, str(Path(data_dir) / MANIFEST))
    mods = available_modalities(dataset.manifest, modalities)
    if not mods:
        raise CatalogError(f"{Path(data_dir) / MANIFEST}: no column set for any modality "
                           f"{list(modalities)} (needs {MODALITY_INPUTS})")
    plan = _plan(model_sha, dataset, cols, mods, rows_per_shard)
    ranks = Ranks.from_env()
    state = _open_plan(out, plan, overwrite) if ranks.rank == 0 else None
    ranks.barrier()  # no rank writes a shard before rank 0 has checked (or cleared) the folder
    finished = ranks.broadcast(_finished_catalog(out, state) if state else None)
    if finished is not None:  # the same catalog, already complete: nothing to do
        return finished
    embed_fn = embed_fn or _default_embed_fn(num_workers)
    written = _embed_shards(model, dataset, out, plan, batch_size, device, embed_fn,
                            progress and ranks.rank == 0, max_shards, ranks)
    written = {i: e for part in ranks.all_gather(written) for i, e in part.items()}
    manifest = None
    if ranks.rank == 0:  # only shards of earlier runs are read back and hashed again
        entries = [written.get(i) or _finished_shard(out, catalog_shard_name(i), hi - lo, model_sha)
                   for i, (lo, hi) in enumerate(plan["ranges"])]
        if all(e is not None for e in entries):
            manifest = _catalog_manifest(out, entries, plan["modalities"], model_path, model_sha, {
                "path": str(Path(dataset.path).resolve()), "n_rows": len(dataset),
                "shards_sha256": plan["dataset_shards_sha256"]}, {
                "command": "galclip embed", "batch_size": batch_size,
                "rows_per_shard": plan["rows_per_shard"]}, getattr(model, "family", "galclip"))
            state.mark_complete({"n_rows": manifest["n_rows"]})
    return ranks.broadcast(manifest)  # every rank returns once the manifest exists


class Ranks:
    """This process's place among the ranks of a distributed run (``RANK``/``WORLD_SIZE`` as set
    by torchrun, SLURM wrappers or Lightning); one rank when they are absent."""

    def __init__(self, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
        self.rank, self.world = rank, world

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    def mine(self, shard: int) -> bool:
        return shard % self.world == self.rank

    def barrier(self) -> None:
        """Wait for every rank (starting the process group on first use: nccl on a GPU,
        gloo otherwise; a day's timeout, since ranks may wait for a slow one's shards)."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=_dt.timedelta(hours=24))
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        self.barrier()  # starts the process group if needed
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _embed_shards(model, dataset, out: Path, plan: dict[str, Any], batch_size: int, device,
                  embed_fn: Callable, progress: bool, max_shards: int | None,
                  ranks: Ranks) -> dict[int, dict[str, Any]]:
    """Embed this rank's missing shards (at most ``max_shards`` of them); their manifest
    entries by shard number."""
    from tqdm.auto import tqdm

    todo = [i for i, (lo, hi) in enumerate(plan["ranges"]) if ranks.mine(i)
            and _finished_shard(out, catalog_shard_name(i), hi - lo, plan["model_sha256"]) is None]
    todo = todo[:max_shards] if max_shards is not None else todo
    rows = sum(plan["ranges"][i][1] - plan["ranges"][i][0] for i in todo)
    bar = tqdm(total=rows, unit="obj", unit_scale=True, desc=f"embed (rank {ranks.rank}/"
               f"{ranks.world})", disable=not progress, smoothing=0.1)
    t0 = time.perf_counter()
    written = {i: _embed_one_shard(model, dataset, out, i, plan, batch_size, device, embed_fn,
                                   bar.update) for i in todo}
    bar.close()
    dt = time.perf_counter() - t0
    if progress and rows:
        print(f"embedded {rows} objects in {dt:.1f} s ({rows / max(dt, 1e-9):.1f} objects/s"
              f"{f' on rank 0 of {ranks.world}' if ranks.world > 1 else ''})")
    return written


def _finished_shard(out: Path, name: str, n_rows: int, model_sha: str) -> dict[str, Any] | None:
    """The manifest entry of a shard already written by this plan, else None."""
    path = out / name
    if not path.exists():
        return None
    try:
        meta = pq.read_metadata(path)
        sha = (meta.schema.to_arrow_schema().metadata or {}).get(b"galclip_model_sha256", b"")
    except (pa.ArrowException, OSError):
        return None
    if meta.num_rows != n_rows or sha.decode() != model_sha:
        return None
    return storage.shard_entry(path, out, n_rows)


def _embed_one_shard(model, dataset, out: Path, i: int, plan: dict[str, Any], batch_size: int,
                     device, embed_fn: Callable, on_batch) -> dict[str, Any]:
    lo, hi = plan["ranges"][i]
    mods = plan["modalities"]
    flags = [PRESENCE[m] for m in mods if PRESENCE[m] in dataset.manifest["columns"]]
    meta = _read_range(dataset, lo, hi, list(dict.fromkeys(plan["columns"] + flags)))
    res = embed_range(model, RowRange(dataset, lo, hi), mods, batch_size, device, embed_fn,
                      on_batch)
    if len(res["object_id"]) != hi - lo or not np.array_equal(res["object_id"], meta["object_id"]):
        raise CatalogError(f"{dataset.path}: rows [{lo}, {hi}): the inference function returned "
                           f"{len(res['object_id'])} rows or ids out of order; no row may be dropped")
    present = _presence(meta, mods, hi - lo)
    refuse_nonfinite(dataset.path, lo, res, present)
    table = _shard_table({c: meta[c] for c in plan["columns"]}, {m: res[m] for m in mods},
                         present, plan["model_sha256"])
    entry = write_table_atomic(out / catalog_shard_name(i), table, out)
    return {**entry, "rows": [lo, hi]}


def refuse_nonfinite(data_dir: Path, lo: int, res: dict[str, Any],
                     present: dict[str, np.ndarray]) -> None:
    """A non-finite embedding of a present row means a non-finite input: an error, never a
    NaN vector in the catalog (FAISS would silently return no neighbours for it)."""
    for m, present_m in present.items():
        bad = np.flatnonzero(present_m & ~np.isfinite(res[m]).all(axis=1))
        if len(bad):
            raise CatalogError(f"{data_dir}: row {lo + int(bad[0])} (object_id "
                               f"{int(res['object_id'][bad[0]])}): the {m} embedding is not "
                               f"finite ({len(bad)} such rows in this shard); its input holds "
                               f"NaN or inf (see galclip validate {data_dir})")


def _catalog_manifest(out: Path, entries: list[dict[str, Any]], modalities: Sequence[str],
                      model_path, model_sha: str, dataset: dict[str, Any],
                      provenance: dict[str, Any], family: str | None = None) -> dict[str, Any]:
    """Write (atomically) and return the manifest of the catalog whose shards are ``entries``;
    ``family`` is the model's (``galclip``, ``astroclip``)."""
    from galclip import __version__

    manifest = storage.base_manifest(CATALOG_FORMAT, CATALOG_VERSION, out,
                                     [{k: v for k, v in e.items() if k != "rows"} for e in entries])
    manifest.update({
        "modalities": list(modalities),
        "embedding_dim": {m: manifest["columns"][embedding_column(m)]["shape"][0] for m in modalities},
        "model": {"path": str(Path(model_path).resolve()) if model_path else None,
                  "sha256": model_sha, **({"family": family} if family else {})},
        "dataset": dataset,
        "provenance": {**provenance, "galclip_version": __version__,
                       "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
    })
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def write_catalog(out_dir: str | Path, meta: dict[str, np.ndarray],
                  embeddings: dict[str, np.ndarray], *, model_sha256: str,
                  model_path: str | Path | None = None, present: dict[str, np.ndarray] | None = None,
                  rows_per_shard: int = ROWS_PER_SHARD,
                  dataset: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a catalog from arrays already in memory (embeddings computed elsewhere, synthetic
    catalogs for benchmarks). ``meta`` needs the base columns; ``embeddings`` maps modality to
    (N, E) vectors; ``present`` marks rows that have each modality (default: all); ``dataset``
    (``{"path": ...}``) names the dataset the rows come from, as ``galclip embed`` records it."""
    missing = [c for c in BASE_COLUMNS if c not in meta]
    if missing:
        raise CatalogError(f"{out_dir}: meta lacks required column(s) {missing}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(meta["object_id"])
    present = present or {m: np.ones(n, dtype=bool) for m in embeddings}
    entries = []
    for i, lo in enumerate(range(0, n, rows_per_shard)):
        sl = slice(lo, min(lo + rows_per_shard, n))
        table = _shard_table({c: np.asarray(v)[sl] for c, v in meta.items()},
                             {m: v[sl] for m, v in embeddings.items()},
                             {m: np.asarray(p)[sl] for m, p in present.items()}, model_sha256)
        entries.append(write_table_atomic(out / catalog_shard_name(i), table, out))
    keep = {e["file"] for e in entries}
    for old in out.glob(f"{SHARD_DIR}/emb-*.parquet"):  # shards of an earlier, larger catalog
        if old.relative_to(out).as_posix() not in keep:
            old.unlink()
    return _catalog_manifest(out, entries, list(embeddings), model_path, model_sha256,
                             dict(dataset or {}),
                             {"command": "galclip.search.catalog.write_catalog"})


# ----------------------------------------------------------------------------- reading
def read_catalog_manifest(path: str | Path, verify_checksums: bool = False) -> dict[str, Any]:
    """Read and check a catalog's manifest: every shard must exist with the recorded size and a
    readable Parquet footer holding the recorded row count (cheap: no data page is read); with
    ``verify_checksums`` also its sha256 (every byte; ``galclip validate``: galclip.search.verify)."""
    path = Path(path)
    mpath = path / MANIFEST
    hint = " (embedding not finished? rerun galclip embed)" if (path / PLAN).exists() else ""
    manifest = storage.load_manifest_json(mpath, CatalogError, hint)
    if manifest.get("format") != CATALOG_FORMAT:
        raise CatalogError(f"{mpath}: field 'format' is {manifest.get('format')!r}, expected "
                           f"{CATALOG_FORMAT!r} (is this a dataset folder rather than a catalog?)")
    for e in manifest["shards"]:
        spath = path / e["file"]
        if not spath.exists():
            raise CatalogError(f"{spath}: shard listed in the manifest is missing")
        try:
            storage.check_shard(spath, e, checksums=verify_checksums)
        except storage.StorageError as err:
            raise CatalogError(str(err)) from err
    return manifest


def catalog_fingerprint(manifest: dict[str, Any]) -> str:
    """A hash of the catalog's content (its shards' checksums and the model identity)."""
    blob = json.dumps([manifest["model"]["sha256"], [s["sha256"] for s in manifest["shards"]]])
    return hashlib.sha256(blob.encode()).hexdigest()


def read_catalog_table(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The whole catalog (or some columns) as one Arrow table, rows in catalog order."""
    path = Path(path)
    return storage.read_rows(path, read_catalog_manifest(path)["shards"], columns)


def read_embeddings(path: str | Path, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (M, E) float32, rows (M,) int64): the non-null embeddings of one modality and
    their row numbers in the catalog."""
    return _valid_vectors(read_catalog_table(path, [embedding_column(modality)]).column(0))


def catalog_embeddings(path: str | Path, dataset, model_sha256: str, rows: np.ndarray
                       ) -> dict[str, np.ndarray]:
    """The stored embeddings of dataset rows ``rows`` (increasing), as ``embed_dataset`` returns
    them (``object_id``, ``<modality>_embedding`` (N, E) float32; NaN where absent): the
    vectors the server searches. The catalog must have been made by this model (checkpoint
    sha256) from this dataset (fingerprint), else a CatalogError names the field."""
    from galclip.data.dataset import column_to_numpy

    path = Path(path)
    manifest = read_catalog_manifest(path)
    made_from = {"model.sha256": (manifest["model"].get("sha256"), model_sha256),
                 "dataset.shards_sha256": ((manifest.get("dataset") or {}).get("shards_sha256"),
                                           dataset.fingerprint)}
    for name, (recorded, wanted) in made_from.items():
        if recorded != wanted:
            raise CatalogError(f"{path / MANIFEST}: field '{name}' is {str(recorded)[:12]}..., not "
                               f"{wanted[:12]}...: the catalog was made from another "
                               f"{name.split('.')[0]}; rerun galclip embed")
    cols = ["object_id"] + [embedding_column(m) for m in manifest["modalities"]]
    table = storage.take_rows(path, manifest["shards"], cols, rows)
    return {c: column_to_numpy(table.column(c), manifest["columns"][c]["shape"]) for c in cols}


def read_catalog_astropy(path: str | Path, columns: Sequence[str] | None = None):
    """The catalog as an ``astropy.table.Table``; embedding columns become (N, E) masked
    columns, masked where a galaxy lacks that modality (astropy's own Parquet reader cannot
    read null list entries)."""
    from astropy.table import MaskedColumn, Table

    from galclip.data.dataset import column_to_numpy

    table = read_catalog_table(path, columns)
    out = Table()
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_fixed_size_list(col.type):
            arr = column_to_numpy(col, (col.type.list_size,))
            mask = np.repeat(~np.asarray(col.is_valid(), bool)[:, None], col.type.list_size, axis=1)
            out[name] = MaskedColumn(arr, mask=mask)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


# ----------------------------------------------------------------------------- streaming
def _valid_vectors(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (M, E) float32, positions (M,)) of the non-null entries of an embedding column."""
    col = col.combine_chunks()
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    vectors = col.filter(col.is_valid()).flatten().to_numpy(zero_copy_only=False)
    return (np.ascontiguousarray(vectors.reshape(-1, col.type.list_size), dtype=np.float32),
            np.flatnonzero(valid).astype(np.int64))


def iter_embedding_chunks(path: str | Path, modality: str, chunk_rows: int = 262_144
                          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(vectors (M, E) float32, rows (M,) int64)`` of one modality's non-null
    embeddings, shard by shard, never holding more than about ``chunk_rows`` catalog rows."""
    path = Path(path)
    manifest = read_catalog_manifest(path)
    col, start = embedding_column(modality), 0
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    n_held = 0
    for table in storage.iter_row_groups(path, manifest["shards"], [col]):
        vectors, pos = _valid_vectors(table.column(0))
        parts.append((vectors, pos + start))
        n_held += table.num_rows
        start += table.num_rows
        if n_held >= chunk_rows:
            yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            parts, n_held = [], 0
    if parts:
        yield np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def sample_embeddings(path: str | Path, modality: str, n: int, seed: int = 0,
                      chunk_rows: int = 262_144) -> np.ndarray:
    """About ``n`` embeddings drawn uniformly from the catalog in one streaming pass (each row
    kept with probability n / catalog rows): a training sample that never loads the whole."""
    total = read_catalog_manifest(path)["n_rows"]
    p = min(1.0, n / max(total, 1))
    rng = np.random.default_rng(seed)
    kept = [v[rng.random(len(v)) < p] for v, _ in iter_embedding_chunks(path, modality, chunk_rows)]
    return np.concatenate(kept) if kept else np.zeros((0, 0), np.float32)


def read_embedding_row(path: str | Path, manifest: dict[str, Any], modality: str, row: int
                       ) -> np.ndarray:
    """The stored (E,) embedding of one catalog row, reading the one row group that holds it."""
    path = Path(path)
    n = int(manifest["n_rows"])
    if not 0 <= row < n:
        raise CatalogError(f"{path}: row {row} is beyond the catalog's {n} rows")
    value = storage.read_rows(path, manifest["shards"], [embedding_column(modality)], row,
                              row + 1).column(0)[0]
    if not value.is_valid:
        raise CatalogError(f"{path}: row {row} has no {embedding_column(modality)}")
    return np.asarray(value.values.to_numpy(zero_copy_only=False), np.float32)
