"""FAISS indexes over a catalog's embeddings, one per modality.

Embeddings are unit vectors, so cosine similarity is the inner product
(``faiss.METRIC_INNER_PRODUCT``). Below ``EXACT_THRESHOLD`` vectors the index is exact
(``IndexFlatIP``); above it, approximate: IVF-Flat (Jégou et al. 2011, inverted lists over a
k-means coarse quantizer) by default, or HNSW (Malkov & Yashunin 2018). The choice is
automatic and can be overridden. From ``COMPRESS_THRESHOLD`` vectors (about 5 GB of raw 256-d
vectors) the automatic choice is a compressed IVF index (``galclip.search.ivfpq``: IVF-SQ8, or
IVF-PQ on request), built in chunks from the catalog shards without loading all vectors, saved
in parts that a query searches together. An approximate index is tuned after it is built: its search
parameter (``nprobe`` or ``efSearch``) is raised until recall@10 against exact search, measured on
a sample of catalog vectors as queries (both modalities, since search runs across them),
reaches ``target_recall``; the figure is recorded.

Index files sit in the catalog folder (``index-<modality>.faiss``, or ``.part-NNN.faiss`` for
IVF-PQ, + ``.json``); the JSON holds the catalog fingerprint and vector count, checked when the
index is loaded.
"""
from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galclip.resume import ResumeState
from galclip.search.catalog import (
    CatalogError,
    catalog_fingerprint,
    embedding_column,
    iter_embedding_chunks,
    read_catalog_manifest,
    read_embedding_row,
    read_embeddings,
    sample_embeddings,
)
from galclip.search.ivfpq import TRAIN_PER_LIST
from galclip.storage import atomic_write, sha256_file, write_json_atomic

KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq", "ivfsq8")
COMPRESSED = {"ivfpq": "pq", "ivfsq8": "sq8"}  # kind -> codec of galclip.search.ivfpq
EXACT_THRESHOLD = 50_000
COMPRESS_THRESHOLD = 5_000_000
CHUNK_ROWS = 262_144
RECALL_SAMPLE = 1000
TARGET_RECALL = 0.95


@dataclass
class LoadedIndex:
    """A FAISS index and how its positions map to catalog rows."""

    index: Any
    rows: np.ndarray  # (M,) catalog row of each index position
    info: dict[str, Any] = field(default_factory=dict)
    catalog_dir: Path | None = None

    @property
    def kind(self) -> str:
        return self.info["kind"]

    def vector(self, pos: int) -> np.ndarray:
        """The (E,) stored vector at an index position: exact, read from the catalog's Parquet
        when the index holds only compressed codes."""
        if self.kind not in COMPRESSED or self.info.get("rerank"):
            return self.index.reconstruct(int(pos))       # with re-ranking: the stored float16
        manifest = read_catalog_manifest(self.catalog_dir)
        v = read_embedding_row(self.catalog_dir, manifest, self.info["modality"], int(self.rows[pos]))
        return normalized(v[None])[0]


def index_paths(catalog_dir: str | Path, modality: str) -> tuple[Path, Path]:
    base = Path(catalog_dir) / f"index-{modality}"
    return base.with_suffix(".faiss"), base.with_suffix(".json")


def choose_kind(n: int, kind: str = "auto", threshold: int = EXACT_THRESHOLD,
                compress_threshold: int = COMPRESS_THRESHOLD) -> str:
    """``flat`` below ``threshold`` vectors, ``ivf`` above, compressed ``ivfsq8`` from
    ``compress_threshold`` (it keeps recall@10 >= 0.95 where 16x-smaller IVF-PQ codes may
    not: choose ``ivfpq`` when memory, not recall, is the limit), unless ``kind`` says so."""
    if kind not in KINDS:
        raise ValueError(f"index kind {kind!r} unknown; choose from {KINDS}")
    if kind != "auto":
        return kind
    return "flat" if n < threshold else "ivf" if n < compress_threshold else "ivfsq8"


def normalized(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


KMEANS_ITER = 10
MAX_TRAIN_SAMPLE = 5_000_000  # 5 GB of 256-d training vectors: nlist <= 128k from here


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
        from galclip.search.ivfpq import default_nlist, trained_index

        nlist = nlist or default_nlist(n)
        rng = np.random.default_rng(seed)
        train = vectors[np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))]
        index = trained_index(train, nlist, "flat", seed=seed, niter=KMEANS_ITER)
    else:
        raise ValueError(f"index kind {kind!r} unknown; choose from {KINDS[1:]}")
    index.add(vectors)
    if kind == "ivf":
        index.make_direct_map()  # lets reconstruct() fetch stored vectors (filtered search)
    return index


def batch_search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(queries, k)`` for a large batch, the same results (scores and positions,
    bit for bit): on an IVF-Flat index (``galclip index`` kind ivf) the queries are scanned in
    the order of the inverted lists they probe, so that queries probing the same lists follow
    each other and find those lists still in the CPU cache (the scan reads ~nprobe/nlist of the
    index per query; in catalog order every query fetches its lists from memory again). The
    coarse assignment is the one ``search`` computes (:func:`coarse_assignment`); each query's
    scan does not depend on the order. Other indexes (a subclass may search differently:
    IVF-PQR re-ranks) are searched as they are."""
    import faiss

    q = np.ascontiguousarray(queries, np.float32)
    if type(index) is not faiss.IndexIVFFlat or len(q) < 2 or index.nprobe > index.nlist:
        return index.search(q, k)
    coarse, lists = coarse_assignment(index, q)                      # (n, nprobe) each
    order = np.lexsort(lists.T[::-1])                                # by first list, then next
    s, p = index.search_preassigned(q[order], k, lists[order], coarse[order])
    scores, positions = np.empty_like(s), np.empty_like(p)
    scores[order], positions[order] = s, p
    return scores, positions


SCAN_MIN_PER_LIST = 32  # queries a probed list, on average, from which ListScan beats FAISS


@dataclass
class ListScan:
    """Search of a large batch of queries on an IVF-Flat inner-product index with one matrix
    product per inverted list (the grouping of ``faiss.contrib.big_batch_search``): the queries
    that probe a list (the coarse assignment FAISS's search computes, :func:`coarse_assignment`)
    times the list's vectors, one BLAS sgemm, then FAISS's own top-k heaps. FAISS's search takes
    one dot product at a time, each query fetching its lists from memory afresh; here a list
    is read once for the batch. The candidates are FAISS's (the same lists); the scores equal
    its to float rounding (the sum runs in another order: a few 1e-7), so the results are the
    same but where two candidates tie, or nearly, at the k-th place. Each query's nearest list
    is scanned first so that its heap holds good candidates early (fewer heap insertions).

    The products are small (~10^2 x 10^2 x d): run it with BLAS on one thread per calling thread
    (:func:`blas_threads`); a multithreaded BLAS spends 5-30x their CPU time on its threads. Below
    ``SCAN_MIN_PER_LIST`` queries a probed list (per-list overheads) it defers to
    :func:`batch_search`."""

    index: Any
    lists: list  # per inverted list: (ids (n_l,) int64, vectors (n_l, d) float32), the index's memory

    @classmethod
    def of(cls, index) -> ListScan | None:
        """The scan of ``index``, or None when it is not an in-memory IVF-Flat inner-product index."""
        import faiss

        if (type(index) is not faiss.IndexIVFFlat or index.metric_type != faiss.METRIC_INNER_PRODUCT
                or not isinstance(faiss.downcast_InvertedLists(index.invlists),
                                  faiss.ArrayInvertedLists)):
            return None
        return cls(index, [_list_view(index.invlists, i, index.d) for i in range(index.nlist)])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n, k) float32, index positions (n, k) int64, -1 where none), best first."""
        import faiss

        q = np.ascontiguousarray(queries, np.float32)
        nlist, nprobe = self.index.nlist, self.index.nprobe
        if nprobe > nlist or len(q) * nprobe < SCAN_MIN_PER_LIST * nlist:
            return batch_search(self.index, q, k)
        _, probes = coarse_assignment(self.index, q)                  # (n, nprobe), nearest first
        heap = faiss.ResultHeap(len(q), k, keep_max=True)
        for cols in (probes[:, :1], probes[:, 1:]):                   # nearest lists first
            for lst, who in queries_by_list(cols, nlist):
                ids, x = self.lists[lst]
                if len(ids):
                    heap.add_result_subset(who, q[who] @ x.T, ids)    # (n_who, n_l)
        heap.finalize()
        return heap.D, heap.I


def _list_view(invlists, i: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors (n, d)) of inverted list ``i``: views of FAISS's memory, no copy."""
    import faiss

    n = invlists.list_size(i)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, d), np.float32)
    ids = faiss.rev_swig_ptr(invlists.get_ids(i), n).view(np.int64)
    codes = faiss.rev_swig_ptr(invlists.get_codes(i), n * d * 4).view(np.float32)
    return ids, codes.reshape(n, d)


def queries_by_list(probes: np.ndarray, nlist: int) -> Iterator[tuple[int, np.ndarray]]:
    """(list, the rows of ``probes`` (n, p) that probe it) for every list probed (-1: none)."""
    flat = probes.ravel()
    order = np.argsort(flat, kind="stable")
    lims = np.searchsorted(flat[order], np.arange(-1, nlist + 1))    # list -1 is skipped
    rows = order // max(probes.shape[1], 1)
    for lst in np.flatnonzero(np.diff(lims[1:])):
        yield int(lst), rows[lims[lst + 1]:lims[lst + 2]]


def blas_threads(n: int):
    """Context in which the BLAS libraries (NumPy's, FAISS's) use ``n`` threads. A setting of
    the whole process: set it once around work whose threads are already the parallelism."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def coarse_assignment(index, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The quantizer's (scores, lists) (n, nprobe) of queries as ``IndexIVF::search`` computes
    them: on as many slices of the batch as this thread's OpenMP threads (the quantizer's
    kernel depends on the slice size: exact below 20 queries, BLAS above)."""
    import faiss

    nt = max(1, min(faiss.omp_get_max_threads(), len(q)))
    cuts = [len(q) * t // nt for t in range(nt + 1)]
    parts = [index.quantizer.search(q[a:b], index.nprobe)
             for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    return np.concatenate([s for s, _ in parts]), np.concatenate([p for _, p in parts])


def set_search_param(index, kind: str, value: int) -> None:
    if kind == "ivf":
        from galclip.search.ivfpq import set_nprobe

        set_nprobe(index, value)
    elif kind in COMPRESSED:
        index.nprobe = int(value)  # ShardedIVF: every part, quantizer included
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
    import faiss

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    return tune_to_truth(index, kind, queries, exact.search(queries, min(10, len(vectors)))[1],
                         target)


def recall_of(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (Q, k) found in the same row of ``found``."""
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(t, f)) / k for t, f in zip(truth, found, strict=True)]))


def tune_to_truth(index, kind: str, queries: np.ndarray, truth: np.ndarray,
                  target: float = TARGET_RECALL) -> tuple[int, float]:
    """``tune`` against known exact neighbours ``truth`` (Q, k). A compressed index stops
    raising nprobe when recall stops growing (its codes, not its probes, then limit it)."""
    value, limit = (8, index.nlist) if kind == "ivf" or kind in COMPRESSED else (32, 4096)
    best = (value, -1.0)
    while True:
        set_search_param(index, kind, min(value, limit))
        rec = recall_of(index.search(queries, truth.shape[1])[1], truth)
        if kind in COMPRESSED and rec < best[1] + 0.002:
            set_search_param(index, kind, best[0])
            return best
        best = (min(value, limit), rec)
        if rec >= target or value >= limit:
            return best
        value *= 2


def build_index(catalog_dir: str | Path, modality: str, kind: str = "auto",
                threshold: int = EXACT_THRESHOLD, target_recall: float = TARGET_RECALL,
                nlist: int | None = None, save: bool = True, verbose: bool = True,
                compress: dict[str, int] | None = None) -> LoadedIndex:
    """Build (and by default save) the index of one modality of a catalog. ``compress``
    holds IVF-PQ/SQ8 settings (``pq_m``, ``part_vectors``, ``chunk_rows``, ``rerank``).

    Saving records a resume state (``.index-<modality>-state.json``): rerun with the same
    settings on the same catalog (same fingerprint), it loads the saved index and builds nothing."""
    manifest = read_catalog_manifest(catalog_dir)
    if not save:
        return _build_index(catalog_dir, modality, manifest, kind, threshold, target_recall,
                            nlist, False, verbose, compress)
    state = ResumeState.open(Path(catalog_dir) / f".index-{modality}-state.json", "galclip index", {
        "catalog_fingerprint": catalog_fingerprint(manifest), "kind": kind, "threshold": threshold,
        "target_recall": target_recall, "nlist": nlist, "compress": compress or {}},
        on_change="restart")
    if state.complete:
        try:
            loaded = load_index(catalog_dir, modality)
        except (CatalogError, FileNotFoundError):  # files removed or replaced: build again
            pass
        else:
            if verbose:
                print(f"{modality}: {loaded.kind} index over {loaded.info['n_vectors']} vectors is "
                      "up to date (same catalog and settings); nothing to do")
            return loaded
    loaded = _build_index(catalog_dir, modality, manifest, kind, threshold, target_recall, nlist,
                          True, verbose, compress)
    state.mark_complete({"kind": loaded.kind, "n_vectors": loaded.info["n_vectors"]})
    return loaded


def _build_index(catalog_dir, modality: str, manifest: dict[str, Any], kind: str, threshold: int,
                 target_recall: float, nlist: int | None, save: bool, verbose: bool,
                 compress: dict[str, int] | None) -> LoadedIndex:
    if modality not in manifest["modalities"]:
        raise CatalogError(f"{Path(catalog_dir) / 'manifest.json'}: catalog has no "
                           f"{embedding_column(modality)} (modalities: {manifest['modalities']})")
    chosen = choose_kind(manifest["n_rows"], kind, threshold)
    if (compress or {}).get("rerank") and chosen not in COMPRESSED:
        raise ValueError(f"{catalog_dir}: re-ranking applies to the compressed kinds (ivfpq, "
                         f"ivfsq8); the {modality} index of {manifest['n_rows']} rows is "
                         f"{chosen!r}, whose vectors are exact already")
    if chosen in COMPRESSED:
        loaded = build_compressed(catalog_dir, modality, manifest, chosen, nlist=nlist,
                                  target_recall=target_recall, save=save, **(compress or {}))
        _report(loaded.info, verbose)
        if save:
            save_index(catalog_dir, loaded)
        return loaded
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
    loaded = LoadedIndex(index, rows, info, Path(catalog_dir))
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


def _report(info: dict[str, Any], verbose: bool) -> None:
    if verbose:
        print(f"{info['modality']}: {info['kind']} index over {info['n_vectors']} vectors in "
              f"{info['build_seconds']:.1f} s ({len(info['parts'] or [0])} part(s), "
              f"{info['bytes_per_vector']} B/vector"
              + (f", re-ranking {info['rerank']['factor']} x k from {info['rerank']['file']}"
                 if info.get("rerank") else "") + "), recall@10 vs exact "
              f"{info['recall_at_10']:.3f} (nprobe {info['search_param']})")


def _unit_chunks(catalog_dir, modality: str, chunk_rows: int):
    for vectors, rows in iter_embedding_chunks(catalog_dir, modality, chunk_rows):
        yield normalized(vectors), rows


def build_compressed(catalog_dir: str | Path, modality: str, manifest: dict[str, Any],
                     kind: str = "ivfpq", *,
                     nlist: int | None = None, pq_m: int | None = None,
                     part_vectors: int | None = None, chunk_rows: int = CHUNK_ROWS,
                     target_recall: float = TARGET_RECALL, save: bool = True,
                     seed: int = 0, rerank: int = 0) -> LoadedIndex:
    """IVF-PQ (or IVF-SQ8) over one modality, reading the catalog ``chunk_rows`` rows at a
    time: train on a uniform sample, add chunk by chunk into parts of ``part_vectors`` (written as they
    close when saving), tune nprobe against exact neighbours found by streaming brute force.
    ``rerank`` R > 0 also writes the vectors as float16 beside the parts and orders each
    query's R x k best by code by exact inner product (``galclip.search.ivfpq``)."""
    from galclip.search import ivfpq

    t0 = time.perf_counter()
    nlist = nlist or ivfpq.default_nlist(manifest["n_rows"])
    n_sample = min(max(TRAIN_PER_LIST * nlist, 10_240), MAX_TRAIN_SAMPLE)
    sample = sample_embeddings(catalog_dir, modality, n_sample, seed, chunk_rows)
    if sample.size == 0:
        raise CatalogError(f"{catalog_dir}: column {embedding_column(modality)} is null everywhere")
    if kind == "ivfpq" and len(sample) < 256:
        raise CatalogError(f"{catalog_dir}: {len(sample)} {embedding_column(modality)} vectors are "
                           f"too few to train IVF-PQ's 256 codes per sub-vector; use --kind flat")
    sample /= np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)  # in place
    trained = ivfpq.trained_index(sample, min(nlist, max(1, len(sample) // 39)), COMPRESSED[kind],
                                  pq_m, seed, KMEANS_ITER)
    n_train = len(sample)
    del sample  # only the codes stay in memory from here on
    fpath = index_paths(catalog_dir, modality)[0]
    write = (lambda i, ix: ivfpq.write_part_file(fpath, i, ix)) if save else None
    rerank_file = fpath.with_suffix(".rerank.f16")
    if rerank and not save:
        rerank_file = Path(tempfile.mkdtemp(prefix="galclip-rerank-")) / rerank_file.name
    writer = ivfpq.RerankWriter(rerank_file, trained.d) if rerank else None
    try:
        parts, rows = ivfpq.build_parts(trained, _unit_chunks(catalog_dir, modality, chunk_rows),
                                        part_vectors or ivfpq.PART_VECTORS, write, writer)
    except BaseException:
        if writer is not None:
            writer.abort()
            if not save:
                rerank_file.parent.rmdir()
        raise
    stored = writer.close() if writer is not None else None
    rerank_info = {"file": rerank_file.name, "factor": int(rerank), "dtype": "float16",
                   "bytes": int(stored.nbytes)} if writer is not None else None
    if writer is not None and not save:           # the map stays valid after the unlink
        rerank_file.unlink()
        rerank_file.parent.rmdir()
    index = (ivfpq.read_parts(Path(catalog_dir), parts, rerank_info) if save
             else ivfpq.ShardedIVF(parts, stored, int(rerank)))
    build_s = time.perf_counter() - t0
    param, recall, n_q = _tune_compressed(catalog_dir, modality, manifest, index, kind,
                                          chunk_rows, target_recall)
    info = {"modality": modality, "kind": kind, "n_vectors": int(index.ntotal),
            "dim": int(index.d), "metric": "inner_product",
            "catalog_fingerprint": catalog_fingerprint(manifest), "search_param": param,
            "recall_at_10": round(recall, 4), "recall_queries": n_q,
            "build_seconds": round(build_s, 2), "nlist": index.nlist,
            "pq_m": int(trained.pq.M) if kind == "ivfpq" else None,
            "bytes_per_vector": int(index.parts[0].code_size + 8),
            "index_bytes": index.code_bytes(), "train_vectors": int(n_train),
            "parts": parts if save else None, "rerank": rerank_info}
    return LoadedIndex(index, rows, info, Path(catalog_dir))


def _tune_compressed(catalog_dir, modality, manifest, index, kind, chunk_rows, target):
    """nprobe for ``target`` recall@10 on catalog vectors of both modalities as queries (a
    sample drawn apart from the training one: codes fit their training vectors best)."""
    from galclip.search.ivfpq import exact_knn_streamed

    others = [m for m in manifest["modalities"] if m != modality]
    other = (normalized(sample_embeddings(catalog_dir, others[0], RECALL_SAMPLE, 1, chunk_rows))
             if others else None)
    own = normalized(sample_embeddings(catalog_dir, modality, RECALL_SAMPLE, 2, chunk_rows))
    queries = recall_queries(own, other if other is not None and other.size else None)
    truth = exact_knn_streamed(_unit_chunks(catalog_dir, modality, chunk_rows), queries,
                               min(10, index.ntotal), block_floats=chunk_rows * index.d // 4)
    param, recall = tune_to_truth(index, kind, queries, truth, target)
    return param, recall, int(len(queries))


def save_index(catalog_dir: str | Path, loaded: LoadedIndex) -> None:
    import faiss

    fpath, jpath = index_paths(catalog_dir, loaded.info["modality"])
    if loaded.kind not in COMPRESSED:  # their parts were written as they closed
        with atomic_write(fpath) as tmp:
            faiss.write_index(loaded.index, str(tmp))
    with atomic_write(fpath.with_suffix(".rows.npy")) as tmp, open(tmp, "wb") as f:
        np.save(f, loaded.rows)
    info = loaded.info
    files = [*(info.get("parts") or [fpath.name]), fpath.with_suffix(".rows.npy").name,
             *([info["rerank"]["file"]] if info.get("rerank") else [])]
    # checksums of the files as written, for `galclip validate` (opening never reads them whole)
    info["sha256"] = {n: sha256_file(Path(catalog_dir) / n) for n in files}
    write_json_atomic(jpath, info)
    if not loaded.info.get("rerank"):      # a re-rank file left by an earlier build
        fpath.with_suffix(".rerank.f16").unlink(missing_ok=True)


def load_index(catalog_dir: str | Path, modality: str) -> LoadedIndex:
    """Load a saved index and check it belongs to the catalog as it is now."""
    import faiss

    fpath, jpath = index_paths(catalog_dir, modality)
    if not jpath.exists():
        raise FileNotFoundError(f"{fpath}: no {modality} index; run `galclip index {catalog_dir}`")
    info = json.loads(jpath.read_text())
    manifest = read_catalog_manifest(catalog_dir)
    if info.get("catalog_fingerprint") != catalog_fingerprint(manifest):
        raise CatalogError(f"{jpath}: index was built for another version of this catalog "
                           f"(field 'catalog_fingerprint' differs); rerun `galclip index {catalog_dir}`")
    files = [fpath.with_name(n) for n in info.get("parts") or [fpath.name]]
    missing = [f for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: index file listed in {jpath.name} is missing; "
                                f"run `galclip index {catalog_dir}`")
    if info["kind"] in COMPRESSED:
        from galclip.search.ivfpq import read_parts

        try:
            index = read_parts(Path(catalog_dir), info["parts"], info.get("rerank"))
        except ValueError as e:                   # a truncated or missing re-rank file
            raise CatalogError(f"{e} (listed in {jpath.name}); rerun `galclip index "
                               f"{catalog_dir}`") from None
    else:
        index = faiss.read_index(str(fpath))
    rows = np.load(fpath.with_suffix(".rows.npy"))
    if index.ntotal != info["n_vectors"] or len(rows) != index.ntotal:
        raise CatalogError(f"{fpath}: holds {index.ntotal} vectors, {jpath.name} says "
                           f"{info['n_vectors']}; rerun `galclip index {catalog_dir}`")
    if info["kind"] == "ivf":
        index.make_direct_map()
    if info.get("search_param"):
        set_search_param(index, info["kind"], info["search_param"])
    return LoadedIndex(index, rows, info, Path(catalog_dir))
