"""Verify an embedding catalog and its indexes (``galclip validate CATALOG``), reading every byte.

What opening checks and what only this does (docs/search.md, "What is checked when"):

- **open** (:func:`galclip.search.catalog.read_catalog_manifest`, every search and the server):
  the manifest, and for every shard that it exists, has the recorded size and a readable
  Parquet footer with the recorded row count. Cheap: no data page is read.
- **validate** (:func:`validate_catalog`): the above, plus every shard's sha256 against the
  manifest (so bytes changed inside a shard -- same size, footer intact -- are caught here),
  each shard's model fingerprint (its schema metadata) against the manifest's, the model file's
  sha256 when it is still at the recorded path, and every embedding: the recorded dimension,
  finite, unit L2 norm (within :data:`NORM_TOL`) where present. Then each index beside it
  (:func:`validate_index`): built for this catalog (fingerprint), its files present and matching
  the sha256 recorded at build time, readable by FAISS with the recorded number of vectors, one
  per non-null embedding, its row numbers inside the catalog and distinct.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from galclip import storage
from galclip.search import catalog as C
from galclip.search.catalog import CatalogError, embedding_column

#: |‖v‖ - 1| allowed for a stored embedding (bf16 autocast on a GPU rounds before the cast)
NORM_TOL = 1e-2


def validate_catalog(path: str | Path, checksums: bool = True) -> dict[str, Any]:
    """Check a catalog folder and its indexes; returns a summary, raises :class:`CatalogError`
    naming the file and what is wrong."""
    path = Path(path)
    manifest = C.read_catalog_manifest(path)
    sha = manifest["model"]["sha256"]
    counts = {m: 0 for m in manifest["modalities"]}
    for entry in manifest["shards"]:
        spath = path / entry["file"]
        try:
            meta = storage.check_shard(spath, entry, checksums=checksums)
        except storage.StorageError as e:
            raise CatalogError(str(e)) from e
        found = (meta.schema.to_arrow_schema().metadata or {}).get(b"galclip_model_sha256", b"").decode()
        if found != sha:
            raise CatalogError(f"{spath}: embedded by model {found[:12] or '?'}, the manifest says "
                               f"{sha[:12]} (field 'model.sha256'); rerun galclip embed")
        for m in manifest["modalities"]:
            counts[m] += _check_embeddings(spath, m, int(manifest["embedding_dim"][m]))
    model = manifest["model"].get("path")
    model_checked = bool(model) and Path(model).is_file()
    if model_checked and storage.sha256_file(model) != sha:
        raise CatalogError(f"{model}: the model file changed since the catalog was embedded "
                           f"(its sha256 differs from field 'model.sha256' of {path / storage.MANIFEST})")
    indexes = {m: validate_index(path, m, manifest, counts[m])
               for m in manifest["modalities"] if index_files(path, m)[1].exists()}
    return {"manifest": manifest, "embeddings": counts, "model_checked": model_checked,
            "indexes": indexes}


def _check_embeddings(spath: Path, modality: str, dim: int) -> int:
    """Non-null embeddings of one shard: dimension ``dim``, finite, unit norm. Returns their count."""
    col = pq.read_table(spath, columns=[embedding_column(modality)]).column(0).combine_chunks()
    if col.type.list_size != dim:
        raise CatalogError(f"{spath}: column '{embedding_column(modality)}' holds {col.type.list_size}-d "
                           f"vectors, the manifest says {dim} (field 'embedding_dim.{modality}')")
    present = ~np.asarray(col.is_null())
    kept = col.filter(pa.array(present))
    vectors = np.asarray(kept.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    vectors = vectors.reshape(len(kept), dim)
    if not np.isfinite(vectors).all():
        raise CatalogError(f"{spath}: column '{embedding_column(modality)}' holds NaN or inf")
    norms = np.linalg.norm(vectors, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1) > NORM_TOL)
    if len(bad):
        raise CatalogError(f"{spath}: {len(bad)} {modality} embeddings are not unit vectors (norm "
                           f"{norms[bad[0]]:.4g} in row {int(np.flatnonzero(present)[bad[0]])} of the shard)")
    return int(present.sum())


def index_files(catalog_dir: Path, modality: str) -> tuple[Path, Path]:
    from galclip.search.index import index_paths

    return index_paths(catalog_dir, modality)


def validate_index(catalog_dir: Path, modality: str, manifest: dict[str, Any] | None = None,
                   n_embeddings: int | None = None) -> dict[str, Any]:
    """Check the saved ``modality`` index of a catalog (see the module docstring)."""
    from galclip.search.index import load_index

    catalog_dir = Path(catalog_dir)
    manifest = manifest or C.read_catalog_manifest(catalog_dir)
    fpath, jpath = index_files(catalog_dir, modality)
    info = json.loads(jpath.read_text())
    if info.get("catalog_fingerprint") != C.catalog_fingerprint(manifest):
        raise CatalogError(f"{jpath}: built for another version of this catalog (field "
                           f"'catalog_fingerprint' differs); rerun galclip index {catalog_dir}")
    for name, sha in (info.get("sha256") or {}).items():
        f = catalog_dir / name
        if not f.is_file():
            raise CatalogError(f"{f}: index file listed in {jpath.name} is missing; rerun galclip index")
        if storage.sha256_file(f) != sha:
            raise CatalogError(f"{f}: sha256 differs from field 'sha256' of {jpath.name} (file changed "
                               f"or corrupt); rerun galclip index {catalog_dir}")
    try:
        loaded = load_index(catalog_dir, modality)
    except (RuntimeError, ValueError) as e:    # FAISS refuses a damaged file
        raise CatalogError(f"{fpath}: not a readable index ({str(e).splitlines()[0]})") from e
    rows = np.asarray(loaded.rows)
    if n_embeddings is not None and len(rows) != n_embeddings:
        raise CatalogError(f"{fpath}: holds {len(rows)} vectors, the catalog {n_embeddings} "
                           f"{modality} embeddings; rerun galclip index {catalog_dir}")
    outside = len(rows) and (rows.min() < 0 or rows.max() >= manifest["n_rows"])
    if outside or len(np.unique(rows)) != len(rows):
        raise CatalogError(f"{fpath.with_suffix('.rows.npy')}: row numbers outside the catalog's "
                           f"{manifest['n_rows']} rows or repeated; rerun galclip index {catalog_dir}")
    return {"kind": info["kind"], "n_vectors": int(len(rows)),
            "checksums": bool(info.get("sha256"))}
