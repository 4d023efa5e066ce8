"""Compressed indexes for survey-sized catalogs: IVF-PQ or IVF-SQ8 in parts, built in chunks.

IVF-PQ (Jégou, Douze & Schmid 2011, "Product quantization for nearest neighbor search"): a
k-means coarse quantizer of ``nlist`` cells, and each vector's residual stored as ``pq_m`` bytes
(8-bit codes of ``pq_m`` sub-vectors), so 10⁸ vectors of 256 floats take ~10 GB (64 B code +
8 B id each) instead of 100 GB. The quantizers are trained once on a uniform sample of the
catalog; vectors are then read shard by shard (``iter_embedding_chunks``) and added in chunks, so
the raw vectors are never all in memory. Every ``part_vectors`` vectors close one part, a copy
of the trained index written to its own file (``index-<modality>.part-NNN.faiss``): parts can be
built on different machines from their own catalog shards, and a query searches every part and
merges the results (``ShardedIVF``). IVF-SQ8 (8-bit scalar quantization, one byte per
dimension: 264 B per 256-d vector) is the same machinery with codes 4x smaller than floats
instead of 16x, for when PQ's recall ceiling is too low. With ``faiss-gpu`` installed (extra
``galclip[gpu]``) the coarse k-means and the assignment of every vector to its list (the
dominant cost of adding, N x nlist dot products) run on the GPUs; search stays on the CPU.

Re-ranking (``rerank`` R > 0): the unit vectors are also written, as float16, to one file beside
the parts (``index-<modality>.rerank.f16``, 2 B per dimension: 51 GB for 10⁸ x 256) that search
memory-maps rather than loads. A query takes the R x k best by code, reads their vectors and
returns the k best by exact inner product (the refinement step of Jégou et al. 2011, sec. IV.D,
with the exact vectors on disk instead of in memory): the codes find the neighbourhood, the
stored vectors order it, so recall is no longer capped by the codes. Memory stays the codes';
the file is read through the page cache (R x k random rows per query).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

SUBSET_EXACT = 2048  # filtered sets up to this size are scanned over all their codes
RERANK_DTYPE = np.float16
TRAIN_PER_LIST = 50
PART_VECTORS = 20_000_000


def default_pq_m(dim: int) -> int:
    """Bytes per vector: one per 4 dimensions (64 B at 256-d), a divisor of ``dim``."""
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


#: lists from which the coarse quantizer is an HNSW graph over the centroids (Malkov &
#: Yashunin 2018) instead of an exact scan of them, and k-means runs in two levels
HNSW_QUANTIZER_FROM = 4096
HNSW_QUANTIZER_M = 32
QUANTIZER_EF_MIN = 64  # efSearch of the HNSW quantizer: at least this and 2 x nprobe


def default_nlist(n: int, list_size: int = 500) -> int:
    """Inverted lists for ``n`` vectors: about ``n / list_size`` (faiss's guidance for 10⁶-10⁹
    vectors is lists of a few hundred), at least sqrt(n) and at most n / 39 (k-means needs
    39 training points per centroid). With lists of a fixed size a query scans the same
    number of codes whatever N, and the HNSW quantizer finds the lists to scan in ~log(nlist)."""
    n = max(1, int(n))
    return int(np.clip(max(np.sqrt(n), n / list_size), 1, max(1, n // 39)))


def trained_index(sample: np.ndarray, nlist: int, codec: str, pq_m: int | None = None,
                  seed: int = 0, niter: int = 10):
    """An empty IVF inner-product index whose quantizers are trained on ``sample``: codes
    "flat" (raw floats), "pq" (``pq_m`` bytes per vector) or "sq8" (a byte per dimension).
    From ``HNSW_QUANTIZER_FROM`` lists the centroids come from a two-level spherical k-means
    (sqrt(nlist) clusters, then each split in proportion to its size; faiss.contrib.clustering)
    and are searched through an HNSW graph."""
    import faiss

    sample = np.ascontiguousarray(sample, np.float32)
    d = sample.shape[1]
    ip = faiss.METRIC_INNER_PRODUCT
    quantizer = (faiss.IndexHNSWFlat(d, HNSW_QUANTIZER_M, ip) if nlist >= HNSW_QUANTIZER_FROM
                 else faiss.IndexFlatIP(d))
    if codec == "pq":
        pq_m = pq_m or default_pq_m(d)
        if d % pq_m:
            raise ValueError(f"pq_m={pq_m} must divide the embedding dimension {d}")
        index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, 8, ip)
        index.pq.cp.seed, index.pq.cp.niter = seed, niter
    elif codec == "sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
    elif codec == "flat":
        index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
    else:
        raise ValueError(f"codec {codec!r} unknown; choose 'flat', 'pq' or 'sq8'")
    index.cp.seed, index.cp.niter = seed, niter
    if nlist >= HNSW_QUANTIZER_FROM:
        quantizer.add(two_level_centroids(sample, nlist, seed, niter))
        quantizer.hnsw.efSearch = QUANTIZER_EF_MIN
    gpu = gpu_clustering_index(d) if nlist < HNSW_QUANTIZER_FROM else None
    if gpu is not None:
        index.clustering_index = gpu
    index.train(sample)  # with the centroids in place this trains only the codes
    index.clustering_index = None
    return index


def two_level_centroids(sample: np.ndarray, nlist: int, seed: int, niter: int) -> np.ndarray:
    """(nlist, d) unit centroids of a two-level spherical k-means of ``sample``: the cost of
    k-means with 10⁴-10⁵ centroids drops from nlist to ~2 sqrt(nlist) distances per point."""
    from faiss.contrib.clustering import two_level_clustering

    centroids, _ = two_level_clustering(sample, int(np.sqrt(nlist)), nlist, clustering_niter=niter,
                                        spherical=True, seed=seed, gpu=has_gpu())
    return np.ascontiguousarray(centroids, np.float32)


def set_nprobe(index, nprobe: int) -> None:
    """Probe ``nprobe`` lists; an HNSW quantizer then explores at least 2 x nprobe nodes."""
    import faiss

    index.nprobe = int(nprobe)
    quantizer = faiss.downcast_index(index.quantizer)
    if isinstance(quantizer, faiss.IndexHNSW):
        quantizer.hnsw.efSearch = max(QUANTIZER_EF_MIN, 2 * int(nprobe))


def has_gpu() -> bool:
    """faiss-gpu is installed and sees at least one GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def gpu_clustering_index(d: int):
    """A GPU inner-product index for the k-means of training when faiss-gpu sees a GPU."""
    import faiss

    if not has_gpu():
        return None
    return faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(d))


def coarse_assigner(trained):
    """The index that assigns vectors to inverted lists: an exact GPU index over the centroids
    when faiss-gpu sees a GPU, else the quantizer itself (flat, or the HNSW graph)."""
    import faiss

    if not has_gpu():
        return trained.quantizer
    flat = faiss.IndexFlatIP(trained.d)
    flat.add(trained.quantizer.reconstruct_n(0, trained.nlist))
    return faiss.index_cpu_to_all_gpus(flat)


def add_assigned(index, assigner, x: np.ndarray) -> None:
    """``index.add(x)`` with the list assignment done by ``assigner`` (e.g. on a GPU)."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    if len(x) == 0:
        return
    lists = np.ascontiguousarray(assigner.search(x, 1)[1][:, 0], dtype=np.int64)
    index.add_core(len(x), faiss.swig_ptr(x), None, faiss.swig_ptr(lists))


def build_parts(trained, chunks: Iterator[tuple[np.ndarray, np.ndarray]], part_vectors: int,
                write_part=None, rerank_writer: RerankWriter | None = None) -> tuple[list, np.ndarray]:
    """Add every chunk to copies of ``trained``; a part closes at ``part_vectors`` vectors (a
    multiple of 8, so each part's filter bitmap is a byte slice of the global one).
    ``write_part(i, index)`` saves and returns what to keep (e.g. None once on disk);
    ``rerank_writer`` also gets every chunk's vectors, in index order."""
    import faiss

    part_vectors = max(8, part_vectors - part_vectors % 8)
    parts, rows, current = [], [], faiss.clone_index(trained)
    assigner = coarse_assigner(trained)
    for vectors, r in chunks:
        if rerank_writer is not None:
            rerank_writer.add(vectors)
        lo = 0
        while lo < len(vectors):
            take = min(len(vectors) - lo, part_vectors - current.ntotal)
            add_assigned(current, assigner, vectors[lo:lo + take])
            lo += take
            if current.ntotal == part_vectors:
                parts.append(_close(len(parts), current, write_part))
                current = faiss.clone_index(trained)
        rows.append(r)
    if current.ntotal or not parts:
        parts.append(_close(len(parts), current, write_part))
    return parts, np.concatenate(rows) if rows else np.zeros(0, np.int64)


def _close(i: int, index, write_part):
    return write_part(i, index) if write_part else index


class RerankWriter:
    """Appends unit vectors as float16 rows to ``path`` (atomically: a temporary until
    :meth:`close`, which returns the read-only memory map of the finished file)."""

    def __init__(self, path: Path, dim: int):
        from galclip.storage import atomic_path

        self.path, self.dim, self.n = Path(path), int(dim), 0
        self.tmp = atomic_path(self.path)
        self._f = open(self.tmp, "wb")

    def add(self, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"{self.path}: re-rank vectors of shape {vectors.shape}, expected "
                             f"(N, {self.dim})")
        self._f.write(np.ascontiguousarray(vectors, RERANK_DTYPE).tobytes())
        self.n += len(vectors)

    def close(self) -> np.ndarray:
        import os

        self._f.close()
        os.replace(self.tmp, self.path)
        return open_rerank(self.path, self.n, self.dim)

    def abort(self) -> None:
        self._f.close()
        self.tmp.unlink(missing_ok=True)


def open_rerank(path: Path, n: int, dim: int) -> np.ndarray:
    """The (n, dim) float16 re-rank file, memory-mapped read-only; its size is checked."""
    path = Path(path)
    want = int(n) * int(dim) * np.dtype(RERANK_DTYPE).itemsize
    size = path.stat().st_size if path.exists() else None
    if size != want:
        raise ValueError(f"{path}: re-rank file holds {size} bytes, expected {want} "
                         f"({n} vectors x {dim} float16); rebuild the index")
    if n == 0:
        return np.zeros((0, dim), RERANK_DTYPE)
    return np.memmap(path, dtype=RERANK_DTYPE, mode="r", shape=(int(n), int(dim)))


class ShardedIVF:
    """IVF parts searched as one index: part p holds global positions ``starts[p]`` onwards.
    With ``rerank`` ((ntotal, d) stored vectors, e.g. a memory map) each search takes
    ``rerank_factor`` x k candidates by code and orders them by exact inner product."""

    def __init__(self, parts: list, rerank: np.ndarray | None = None, rerank_factor: int = 0):
        self.parts = parts
        for p in parts:
            p.make_direct_map()  # reconstruct() decodes a stored code (filtered small subsets)
        sizes = [p.ntotal for p in parts]
        self.starts = np.cumsum([0] + sizes)[:-1].astype(np.int64)
        self.ntotal = int(sum(sizes))
        self.nlist = int(parts[0].nlist)
        self.d = int(parts[0].d)
        if rerank is not None and (rerank.shape != (self.ntotal, self.d) or rerank_factor < 1):
            raise ValueError(f"re-rank vectors of shape {rerank.shape} (factor {rerank_factor}) "
                             f"for an index of {self.ntotal} x {self.d}")
        self.rerank = rerank if rerank_factor >= 1 else None
        self.rerank_factor = int(rerank_factor) if self.rerank is not None else 0

    @property
    def nprobe(self) -> int:
        return int(self.parts[0].nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        for p in self.parts:
            set_nprobe(p, value)

    def code_bytes(self) -> int:
        """Bytes held by the stored codes and ids (the index's memory, bar the quantizers)."""
        return int(sum(p.ntotal * (p.code_size + 8) for p in self.parts))

    def search(self, q: np.ndarray, k: int, params=None):
        """(scores, positions) of the k best over every part, as ``faiss.Index.search``."""
        q = np.ascontiguousarray(q, np.float32)
        kk = self._candidates(k, self.ntotal)
        results = [p.search(q, kk, params=params) for p in self.parts]
        return self._reranked(q, *self._merge(results, kk), k)

    def _candidates(self, k: int, n: int) -> int:
        return int(min(n, k * self.rerank_factor)) if self.rerank is not None else k

    def _reranked(self, q: np.ndarray, s: np.ndarray, p: np.ndarray, k: int):
        """The k best of the candidates ``p`` (Q, kk) by exact inner product with ``q``."""
        if self.rerank is None or p.shape[1] == 0:
            return s[:, :k], p[:, :k]
        ok = p >= 0
        flat = np.where(ok, p, 0).ravel()
        order = np.argsort(flat, kind="stable")              # rows in file order: fewer seeks
        v = np.empty((len(flat), self.d), np.float32)
        v[order] = self.rerank[flat[order]]
        exact = np.einsum("qkd,qd->qk", v.reshape(*p.shape, self.d), q)
        exact = np.where(ok, exact, -np.inf)
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        s, p = np.take_along_axis(exact, top, 1), np.take_along_axis(p, top, 1)
        return np.where(p >= 0, s, -np.inf).astype(np.float32), np.where(p >= 0, p, -1)

    def _merge(self, results, k: int):
        s = np.concatenate([r[0] for r in results], axis=1)
        p = np.concatenate([np.where(r[1] >= 0, r[1] + start, -1)
                            for r, start in zip(results, self.starts, strict=True)], axis=1)
        s = np.where(p >= 0, s, -np.inf)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        s, p = np.take_along_axis(s, top, 1), np.take_along_axis(p, top, 1)
        return np.where(p >= 0, s, -np.inf).astype(np.float32), p

    def reconstruct(self, pos: int) -> np.ndarray:
        """The vector at ``pos``: the stored one with re-ranking, else decoded from its code."""
        if self.rerank is not None:
            return np.asarray(self.rerank[int(pos)], np.float32)
        part = int(np.searchsorted(self.starts, pos, side="right") - 1)
        return self.parts[part].reconstruct(int(pos - self.starts[part]))

    def reconstruct_batch(self, positions: np.ndarray) -> np.ndarray:
        if self.rerank is not None:
            return np.asarray(self.rerank[np.asarray(positions, np.int64)], np.float32)
        return np.stack([self.reconstruct(int(p)) for p in positions]) if len(positions) else \
            np.zeros((0, self.d), np.float32)

    def search_allowed(self, q: np.ndarray, k: int, allowed: np.ndarray):
        """Top-k among positions where ``allowed`` (M,) is True. Each part gets a byte slice of
        the packed mask as its ID selector; nprobe is raised by the filter's selectivity, and
        a small subset, or one the widened search misses, is scanned in every list."""
        import faiss

        n_allowed = int(allowed.sum())
        k = min(k, n_allowed)
        if k == 0:
            return np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64)
        q = np.ascontiguousarray(q, np.float32)
        kk = self._candidates(k, n_allowed)
        bits = np.packbits(allowed, bitorder="little")  # must outlive the search
        widen = len(allowed) / n_allowed
        nprobe = self.nlist if n_allowed <= SUBSET_EXACT else int(
            min(self.nlist, np.ceil(self.nprobe * widen)))
        s, p = self._search_selected(q, kk, bits, nprobe, faiss)
        if (p[0] < 0).any() and nprobe < self.nlist:
            s, p = self._search_selected(q, kk, bits, self.nlist, faiss)
        return self._reranked(q, s, p, k)

    def _search_selected(self, q, k, bits, nprobe, faiss):
        results = []
        for part, start in zip(self.parts, self.starts, strict=True):
            sub = bits[start // 8:]
            sel = faiss.IDSelectorBitmap(part.ntotal, faiss.swig_ptr(sub))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=int(nprobe))
            results.append(part.search(np.ascontiguousarray(q, np.float32), k, params=params))
        return self._merge(results, k)


def part_path(fpath: Path, i: int) -> Path:
    return fpath.with_name(f"{fpath.stem}.part-{i:03d}.faiss")


def write_part_file(fpath: Path, i: int, index) -> str:
    """Write part i atomically next to ``fpath``; returns its file name."""
    import faiss

    from galclip.storage import atomic_write

    path = part_path(fpath, i)
    with atomic_write(path) as tmp:
        faiss.write_index(index, str(tmp))
    return path.name


def read_parts(folder: Path, names: list[str], rerank: dict | None = None) -> ShardedIVF:
    """The saved parts ``names``; ``rerank`` ({"file", "factor"}, as the index JSON records it)
    memory-maps the re-rank vectors."""
    import faiss

    parts = [faiss.read_index(str(folder / n)) for n in names]
    if not rerank:
        return ShardedIVF(parts)
    n = sum(p.ntotal for p in parts)
    return ShardedIVF(parts, open_rerank(folder / rerank["file"], n, parts[0].d), int(rerank["factor"]))


class StreamedKnn:
    """Exact top-k positions of each query over vectors fed in order (``add``), by brute force
    ``block_floats`` scores at a time: ground truth without holding all vectors."""

    def __init__(self, queries: np.ndarray, k: int, block_floats: int):
        self.queries, self.k, self.seen = queries, k, 0
        self.block = max(16, block_floats // max(1, len(queries)))
        self.best_s = np.full((len(queries), 0), -np.inf, np.float32)
        self.positions = np.zeros((len(queries), 0), np.int64)  # (Q, k), unordered

    def add(self, vectors: np.ndarray) -> None:
        for lo in range(0, len(vectors), self.block):
            s = self.queries @ vectors[lo:lo + self.block].T  # (Q, b)
            top = _top(s, self.k)
            best_s = np.concatenate([self.best_s, np.take_along_axis(s, top, 1)], axis=1)
            best_p = np.concatenate([self.positions, top + self.seen], axis=1)
            keep = _top(best_s, self.k)
            self.best_s = np.take_along_axis(best_s, keep, 1)
            self.positions = np.take_along_axis(best_p, keep, 1)
            self.seen += s.shape[1]


def exact_knn_streamed(chunks: Iterator[tuple[np.ndarray, np.ndarray]], queries: np.ndarray,
                       k: int, block_floats: int) -> np.ndarray:
    """(Q, k) exact neighbour positions (counting the streamed vectors in order) of queries."""
    knn = StreamedKnn(queries, k, block_floats)
    for vectors, _ in chunks:
        knn.add(vectors)
    return knn.positions


def _top(s: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the (unordered) k largest entries of each row."""
    kk = min(k, s.shape[1])
    return np.argpartition(-s, kk - 1, axis=1)[:, :kk]
