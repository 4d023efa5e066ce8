"""FAISS indexes over a catalog's embeddings, one per modality.

Embeddings are unit vectors, so cosine similarity is the inner product
(``faiss.METRIC_INNER_PRODUCT``). Below ``EXACT_THRESHOLD`` vectors the index is exact
(``IndexFlatIP``); above it, approximate: IVF-Flat (Jégou et al. 2011, inverted lists over a
k-means coarse quantizer) by default, or HNSW (Malkov & Yashunin 2018). The choice is
automatic and can be overridden. An approximate index is tuned after it is built: its search
parameter (``nprobe`` or ``efSearch``) is raised until recall@10 against exact search, measured on
a sample of catalog vectors as queries (both modalities, since search runs across them),
reaches ``target_recall``; the figure is recorded.

Index files sit in the catalog folder (``index-<modality>.faiss`` + ``.json``); the JSON holds
the catalog fingerprint and vector count, checked when the index is loaded.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galclip.data.format import _atomic_path, write_json_atomic
from galclip.search.catalog import (
    CatalogError,
    catalog_fingerprint,
    embedding_column,
    read_catalog_manifest,
    read_embeddings,
)

KINDS = ("auto", "flat", "ivf", "hnsw")
EXACT_THRESHOLD = 50_000
RECALL_SAMPLE = 1000
TARGET_RECALL = 0.95


@dataclass
class LoadedIndex:
    """A FAISS index and how its positions map to catalog rows."""

    index: Any
    rows: np.ndarray  # (M,) catalog row of each index position
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.info["kind"]


def index_paths(catalog_dir: str | Path, modality: str) -> tuple[Path, Path]:
    base = Path(catalog_dir) / f"index-{modality}"
    return base.with_suffix(".faiss"), base.with_suffix(".json")


def choose_kind(n: int, kind: str = "auto", threshold: int = EXACT_THRESHOLD) -> str:
    """``flat`` below ``threshold`` vectors, ``ivf`` above, unless ``kind`` says otherwise."""
    if kind not in KINDS:
        raise ValueError(f"index kind {kind!r} unknown; choose from {KINDS}")
    if kind != "auto":
        return kind
    return "flat" if n < threshold else "ivf"


def normalized(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


KMEANS_ITER = 10
TRAIN_PER_LIST = 50


def _default_nlist(n: int) -> int:
    """About sqrt(N) inverted lists: cheap k-means on 2 cores; nprobe is tuned afterwards."""
    return int(np.clip(np.sqrt(n), 1, max(1, n // 39)))


def create_index(vectors: np.ndarray, kind: str, *, nlist: int | None = None, hnsw_m: int = 32,
                 seed: int = 0):
    """Build a FAISS inner-product index of the given kind over (N, E) unit vectors."""
    import faiss

    n, d = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    elif kind == "ivf":
        nlist = nlist or _default_nlist(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = vectors[np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))]
        index.cp.seed, index.cp.niter = seed, KMEANS_ITER
        index.train(train)
    else:
        raise ValueError(f"index kind {kind!r} unknown; choose from {KINDS[1:]}")
    index.add(vectors)
    if kind == "ivf":
        index.make_direct_map()  # lets reconstruct() fetch stored vectors (filtered search)
    return index


def set_search_param(index, kind: str, value: int) -> None:
    if kind == "ivf":
        index.nprobe = int(value)
    elif kind == "hnsw":
        index.hnsw.efSearch = int(value)


def recall_at_k(index, vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the exact top-k (over ``vectors``) that ``index`` finds, per query."""
    import faiss

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    k = min(k, len(vectors))
    _, truth = exact.search(queries, k)
    _, found = index.search(queries, k)
    return float(np.mean([len(np.intersect1d(t, f)) / k for t, f in zip(truth, found, strict=True)]))


def recall_queries(vectors: np.ndarray, other: np.ndarray | None, sample: int = RECALL_SAMPLE,
                   seed: int = 0) -> np.ndarray:
    """Queries for measuring recall: catalog vectors of the index's modality and, when the
    catalog has the other modality, as many of those (the queries of cross-modal search)."""
    rng = np.random.default_rng(seed)
    parts = [vectors] if other is None or len(other) == 0 else [vectors, other]
    per = max(1, sample // len(parts))
    return np.concatenate([p[rng.choice(len(p), size=min(per, len(p)), replace=False)] for p in parts])


def tune(index, kind: str, vectors: np.ndarray, queries: np.ndarray,
         target: float = TARGET_RECALL) -> tuple[int | None, float]:
    """Raise nprobe / efSearch (doubling) until recall@10 on ``queries`` reaches ``target``."""
    if kind == "flat":
        return None, 1.0
    value, limit = (8, index.nlist) if kind == "ivf" else (32, 4096)
    while True:
        set_search_param(index, kind, min(value, limit))
        rec = recall_at_k(index, vectors, queries, 10)
        if rec >= target or value >= limit:
            return min(value, limit), rec
        value *= 2


def build_index(catalog_dir: str | Path, modality: str, kind: str = "auto",
                threshold: int = EXACT_THRESHOLD, target_recall: float = TARGET_RECALL,
                nlist: int | None = None, save: bool = True, verbose: bool = True) -> LoadedIndex:
    """Build (and by default save) the index of one modality of a catalog."""
    manifest = read_catalog_manifest(catalog_dir)
    if modality not in manifest["modalities"]:
        raise CatalogError(f"{Path(catalog_dir) / 'manifest.json'}: catalog has no "
                           f"{embedding_column(modality)} (modalities: {manifest['modalities']})")
    vectors, rows = read_embeddings(catalog_dir, modality)
    if len(vectors) == 0:
        raise CatalogError(f"{catalog_dir}: column {embedding_column(modality)} is null everywhere")
    refuse_nonfinite_vectors(catalog_dir, modality, vectors, rows)
    if nlist is not None and not 1 <= nlist <= len(vectors):
        raise CatalogError(f"--nlist {nlist}: must be between 1 and the number of vectors "
                           f"({len(vectors)} {modality} embeddings)")
    vectors = normalized(vectors)
    chosen = choose_kind(len(vectors), kind, threshold)
    t0 = time.perf_counter()
    index = create_index(vectors, chosen, nlist=nlist)
    build_s = time.perf_counter() - t0
    others = [m for m in manifest["modalities"] if m != modality]
    other = normalized(read_embeddings(catalog_dir, others[0])[0]) if others and chosen != "flat" else None
    queries = recall_queries(vectors, other)
    param, recall = tune(index, chosen, vectors, queries, target_recall)
    info = {"modality": modality, "kind": chosen, "n_vectors": int(len(vectors)),
            "dim": int(vectors.shape[1]), "metric": "inner_product",
            "catalog_fingerprint": catalog_fingerprint(manifest), "search_param": param,
            "recall_at_10": None if chosen == "flat" else round(recall, 4),
            "recall_queries": None if chosen == "flat" else int(len(queries)),
            "build_seconds": round(build_s, 2)}
    if chosen == "ivf":
        info["nlist"] = int(index.nlist)
    if verbose:
        extra = "" if chosen == "flat" else f", recall@10 vs exact {recall:.3f} (param {param})"
        print(f"{modality}: {chosen} index over {len(vectors)} vectors in {build_s:.1f} s{extra}")
    loaded = LoadedIndex(index, rows, info)
    if save:
        save_index(catalog_dir, loaded)
    return loaded


def refuse_nonfinite_vectors(catalog_dir, modality: str, vectors: np.ndarray,
                            rows: np.ndarray) -> None:
    """NaN/inf vectors never enter an index: FAISS would rank them nowhere, silently."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise CatalogError(f"{catalog_dir}: column {embedding_column(modality)}, catalog row "
                           f"{int(rows[bad[0]])}: non-finite embedding ({len(bad)} rows); "
                           "re-embed from a dataset that passes galclip validate")


def save_index(catalog_dir: str | Path, loaded: LoadedIndex) -> None:
    import os

    import faiss

    fpath, jpath = index_paths(catalog_dir, loaded.info["modality"])
    tmp = _atomic_path(fpath)
    faiss.write_index(loaded.index, str(tmp))
    os.replace(tmp, fpath)
    rpath = fpath.with_suffix(".rows.npy")
    tmp = _atomic_path(rpath)
    with open(tmp, "wb") as f:
        np.save(f, loaded.rows)
    os.replace(tmp, rpath)
    write_json_atomic(jpath, loaded.info)


def load_index(catalog_dir: str | Path, modality: str) -> LoadedIndex:
    """Load a saved index and check it belongs to the catalog as it is now."""
    import faiss

    fpath, jpath = index_paths(catalog_dir, modality)
    if not fpath.exists() or not jpath.exists():
        raise FileNotFoundError(f"{fpath}: no {modality} index; run `galclip index {catalog_dir}`")
    info = json.loads(jpath.read_text())
    manifest = read_catalog_manifest(catalog_dir)
    if info.get("catalog_fingerprint") != catalog_fingerprint(manifest):
        raise CatalogError(f"{jpath}: index was built for another version of this catalog "
                           f"(field 'catalog_fingerprint' differs); rerun `galclip index {catalog_dir}`")
    index = faiss.read_index(str(fpath))
    rows = np.load(fpath.with_suffix(".rows.npy"))
    if index.ntotal != info["n_vectors"] or len(rows) != index.ntotal:
        raise CatalogError(f"{fpath}: holds {index.ntotal} vectors, {jpath.name} says "
                           f"{info['n_vectors']}; rerun `galclip index {catalog_dir}`")
    if info["kind"] == "ivf":
        index.make_direct_map()
    if info.get("search_param"):
        set_search_param(index, info["kind"], info["search_param"])
    return LoadedIndex(index, rows, info)
