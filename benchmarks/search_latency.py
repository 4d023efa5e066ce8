"""Search latency (p50/p95, k = 10, one query at a time) on synthetic clustered catalogs.

Exact (flat inner product) against the approximate indexes galclip builds (IVF-Flat, HNSW),
each tuned by galclip to recall@10 >= 0.95 on held-in queries from both modalities. Vectors are
unit vectors around cluster centres (embedding-like; isotropic random vectors would make every
approximate index look bad). At 100k the whole `Catalog.search` path is also timed (catalog
written to Parquet, index loaded, metadata assembled per result).

    .venv/bin/python benchmarks/search_latency.py --sizes 100000 1000000 --dim 256

Compressed indexes (IVF-SQ8, IVF-PQ; ``--compressed``) are built as galclip builds them for a
survey catalog: vectors generated chunk by chunk (never all in memory), the quantizers trained
on a uniform sample, codes added in chunks, exact neighbours found by streaming brute force
over the same chunks; nprobe tuned on half the queries, recall and latency measured on the
other half. ``--compressed-only-above`` skips flat/IVF-Flat above a size (their raw vectors
would not fit), so 10^7 runs in ~3 GB:

    .venv/bin/python benchmarks/search_latency.py --sizes 100000 1000000 10000000 \
        --compressed ivfsq8 ivfpq --compressed-only-above 1000000
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

#: > 0: "embedding-like" vectors (``--decay``): the per-direction scale falls as i^-DECAY along a
#: fixed random rotation, so most variance lies in a few directions, as in galclip's own
#: embeddings (participation ratio of the demo's: 5.5 image, 9.1 spectrum; 0.625 gives ~10;
#: the isotropic clusters, DECAY = 0, have ~50). Product quantization is at its worst on the
#: isotropic ones.
DECAY = 0.0


def _shape(dim: int, seed: int, decay: float):
    """(per-direction scale, rotation) of the embedding-like vectors; None when isotropic."""
    if decay <= 0:
        return None
    q, _ = np.linalg.qr(np.random.default_rng([seed, 99]).normal(size=(dim, dim)))
    return (np.arange(1, dim + 1, dtype=np.float32) ** -decay), q.astype(np.float32)


def _finish(x: np.ndarray, shape) -> np.ndarray:
    if shape is not None:
        x = (x * shape[0]) @ shape[1]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, dim: int, n_clusters: int, seed: int, decay: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = _shape(dim, seed, DECAY if decay is None else decay)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):  # in chunks to bound peak memory
        m = min(100_000, n - lo)
        x[lo:lo + m] = _finish(centres[rng.integers(0, n_clusters, m)]
                               + 0.35 * rng.normal(size=(m, dim)), shape)
    return x


CHUNK = 250_000


def clustered_chunks(n: int, dim: int, n_clusters: int, seed: int):
    """The same distribution as ``clustered``, generated ``CHUNK`` rows at a time (chunk i from
    its own seed, so a second pass regenerates the same vectors)."""
    centres = np.random.default_rng(seed).normal(size=(n_clusters, dim)).astype(np.float32)
    shape = _shape(dim, seed, DECAY)
    for i, lo in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, i])
        m = min(CHUNK, n - lo)
        yield _finish(centres[rng.integers(0, n_clusters, m)]
                      + 0.35 * rng.normal(size=(m, dim)).astype(np.float32), shape)


def counterpart(x: np.ndarray, seed: int) -> np.ndarray:
    """The other modality of the same galaxies: noise of norm ~0.5 (cosine ~0.9), unit norm."""
    y = x + (0.5 / np.sqrt(x.shape[1])) * np.random.default_rng(seed).normal(size=x.shape).astype(np.float32)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def sample_pass(n: int, dim: int, n_train: int, n_queries: int):
    """One generating pass: a uniform training sample and query vectors (held apart)."""
    rng = np.random.default_rng(3)
    train, own = [], []
    for x in clustered_chunks(n, dim, max(50, n // 1000), seed=0):
        train.append(x[rng.random(len(x)) < n_train / n])
        own.append(x[rng.random(len(x)) < n_queries / n])
    own = np.concatenate(own)[:n_queries]
    half = len(own) // 2  # queries: half own-modality vectors, half their counterparts
    return np.concatenate(train), np.concatenate([own[:half], counterpart(own[half:], 4)])


def bench_compressed(n: int, dim: int, kind: str, n_queries: int, rerank: int = 0) -> dict:
    """Build, tune and time one compressed index (galclip.search.ivfpq) over n vectors;
    ``rerank`` R > 0 keeps the vectors as float16 in a temporary file (memory-mapped) and
    re-ranks R x k candidates, as ``galclip index --rerank R``."""
    from galclip.search.index import COMPRESSED, MAX_TRAIN_SAMPLE, recall_of, tune_to_truth
    from galclip.search.ivfpq import (
        PART_VECTORS,
        RerankWriter,
        ShardedIVF,
        StreamedKnn,
        build_parts,
        default_nlist,
        trained_index,
    )

    nlist = default_nlist(n)
    train, queries = sample_pass(n, dim, min(max(50 * nlist, 10_240), MAX_TRAIN_SAMPLE), 2 * n_queries)
    t0 = time.perf_counter()
    trained = trained_index(train, min(nlist, len(train) // 39), COMPRESSED[kind])
    train_s = time.perf_counter() - t0
    knn, gen = StreamedKnn(queries, 10, CHUNK * dim // 4), [0.0]

    def chunks():  # regenerate; feed the exact search too; keep their time out of the build's
        it = clustered_chunks(n, dim, max(50, n // 1000), seed=0)
        while True:
            t = time.perf_counter()
            x = next(it, None)
            if x is not None:
                knn.add(x)
            gen[0] += time.perf_counter() - t
            if x is None:
                return
            yield x, np.empty(0, np.int64)

    tmp = tempfile.TemporaryDirectory(prefix="search-latency-")
    writer = RerankWriter(Path(tmp.name) / "rerank.f16", dim) if rerank else None
    t0 = time.perf_counter()
    parts, _ = build_parts(trained, chunks(), PART_VECTORS, rerank_writer=writer)
    stored = writer.close() if writer is not None else None
    add_s = time.perf_counter() - t0 - gen[0]
    index = ShardedIVF(parts, stored, rerank)
    tq, mq = slice(0, None, 2), slice(1, None, 2)  # tune on even queries, measure on odd
    param, _ = tune_to_truth(index, kind, queries[tq], knn.positions[tq])
    recall = recall_of(index.search(queries[mq], 10)[1], knn.positions[mq])
    ms = latencies(index, queries[mq])
    label = _layout(kind, parts[0]) + (f", re-rank {rerank} x k ({stored.nbytes / 1e9:.2f} GB "
                                       "float16 on disk)" if rerank else "")
    code_gb = index.code_bytes() / 1e9
    del index, stored
    tmp.cleanup()
    return {"kind": label, "rerank": rerank, "build_s": train_s + add_s, "param": param, "recall": recall,
            "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95),
            "index_gb": code_gb,
            "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def latencies(index, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Milliseconds per single query, on one thread (as galclip's Catalog.search runs them)."""
    from threadpoolctl import threadpool_limits

    out = []
    with threadpool_limits(limits=1):
        for q in queries:
            t0 = time.perf_counter()
            index.search(q[None], k)
            out.append(time.perf_counter() - t0)
    return np.array(out) * 1e3


def bench_index(vectors: np.ndarray, other: np.ndarray, kind: str, n_queries: int):
    from galclip.search.index import create_index, recall_at_k, recall_queries, tune

    t0 = time.perf_counter()
    index = create_index(vectors, kind)
    build = time.perf_counter() - t0
    rq = recall_queries(vectors, other, sample=500, seed=1)
    param, _ = tune(index, kind, vectors, rq)
    test_q = recall_queries(vectors, other, sample=n_queries, seed=2)  # fresh queries
    recall = 1.0 if kind == "flat" else recall_at_k(index, vectors, test_q[:500])
    ms = latencies(index, test_q)
    return {"kind": _layout(kind, index), "build_s": build, "param": param, "recall": recall,
            "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95),
            "index_gb": _index_bytes(index) / 1e9,
            "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def _layout(kind: str, index) -> str:
    """The kind with its lists and coarse quantizer, e.g. "ivfsq8, 20000 lists, HNSW quantizer"."""
    import faiss

    if not hasattr(index, "nlist"):
        return kind
    q = "HNSW" if isinstance(faiss.downcast_index(index.quantizer), faiss.IndexHNSW) else "flat"
    return f"{kind}, {index.nlist} lists, {q} quantizer"


def _index_bytes(index) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def bench_api(vectors: np.ndarray, other: np.ndarray, n_queries: int) -> dict:
    from galclip.search.api import Catalog
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    n = len(vectors)
    rng = np.random.default_rng(0)
    meta = {"object_id": np.arange(n, dtype=np.int64), "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-10, 10, n), "redshift": rng.uniform(0, 1, n).astype(np.float32)}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        write_catalog(d, meta, {"image": vectors, "spectrum": other}, model_sha256="0" * 64,
                      rows_per_shard=50_000)
        for kind in ("flat", "ivf"):
            for m in ("image", "spectrum"):
                build_index(d, m, kind=kind, verbose=False)
            cat = Catalog(d)
            ids = rng.choice(n, n_queries, replace=False)
            for label, kw in [("id image->spectrum", {"to": "spectrum"}),
                              ("id + where redshift>0.5", {"where": "redshift > 0.5"})]:
                ms = []
                for i in ids:
                    t0 = time.perf_counter()
                    cat.search(id=int(i), k=10, **kw)
                    ms.append((time.perf_counter() - t0) * 1e3)
                out[f"{kind}: {label}"] = (np.percentile(ms, 50), np.percentile(ms, 95))
    return out


def _row(n: int, r: dict) -> str:
    return (f"| {n:,} | {r['kind']} | {r['build_s']:.1f} | {r['index_gb']:.3f} | {r['rss_gb']:.2f} | "
            f"{r['param'] or '-'} | {r['recall']:.3f} | {r['p50']:.2f} | {r['p95']:.2f} |")


def bench_uncompressed(n: int, args) -> list[tuple[int, dict]]:
    vectors = clustered(n, args.dim, n_clusters=max(50, n // 1000), seed=0)
    # the other modality: each galaxy's vector plus noise of norm ~0.5 (cosine ~0.9 to its
    # counterpart), as for an aligned model; its vectors are the cross-modal queries
    noise = np.random.default_rng(1).normal(size=vectors.shape).astype(np.float32)
    other = vectors + (0.5 / np.sqrt(args.dim)) * noise
    del noise
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    kinds = ["flat", "ivf"] + (["hnsw"] if n <= args.hnsw_max else [])
    rows = []
    for kind in kinds:
        rows.append((n, bench_index(vectors, other, kind, args.queries)))
        print(_row(*rows[-1]), flush=True)
    if n <= 200_000 and not args.no_api:
        for label, (p50, p95) in bench_api(vectors, other, min(args.queries, 200)).items():
            print(f"| {n:,} | Catalog.search, {label} | | | | | | {p50:.2f} | {p95:.2f} |", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--hnsw-max", type=int, default=200_000,
                    help="skip HNSW above this size (its build is slow on 2 cores)")
    ap.add_argument("--compressed", nargs="*", default=[], choices=["ivfsq8", "ivfpq"],
                    help="compressed index kinds to build in chunks as well")
    ap.add_argument("--compressed-only-above", type=int, default=None,
                    help="above this size run only the compressed kinds")
    ap.add_argument("--no-api", action="store_true", help="skip the Catalog.search rows")
    ap.add_argument("--rerank", type=int, nargs="*", default=[0],
                    help="compressed kinds: re-rank R x k candidates with float16 vectors on disk "
                         "(galclip index --rerank R); several values build each (0: without)")
    ap.add_argument("--decay", type=float, default=0.0,
                    help="embedding-like vectors: scale i^-decay per direction (0: isotropic "
                         "clusters, as in earlier RESULTS entries; 0.625: ~10 effective dims)")
    ap.add_argument("--hnsw-quantizer-from", type=int, default=None,
                    help="lists from which the coarse quantizer is HNSW (default: galclip's)")
    args = ap.parse_args()
    global DECAY
    DECAY = args.decay
    import faiss

    from galclip.search import ivfpq

    if args.hnsw_quantizer_from is not None:
        ivfpq.HNSW_QUANTIZER_FROM = args.hnsw_quantizer_from

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, dim {args.dim}, k=10, "
          f"vectors {'isotropic clusters' if DECAY <= 0 else f'embedding-like (decay {DECAY:g})'}, "
          f"single-query latency over {args.queries} queries; index GB: the index's own bytes; "
          f"RSS GB: the process's peak so far")
    print("| N | index | build s | index GB | RSS GB | search param | recall@10 | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows: list[tuple[int, dict]] = []
    for n in args.sizes:
        if args.compressed_only_above is None or n <= args.compressed_only_above:
            rows += bench_uncompressed(n, args)
        for kind in args.compressed:
            for r in args.rerank:
                rows.append((n, bench_compressed(n, args.dim, kind, args.queries, r)))
                print(_row(*rows[-1]), flush=True)
    print_growth(rows)


def print_growth(rows: list[tuple[int, dict]]) -> None:
    """p50 and p95 of each index type at each size over the size before it (goal: <= 2x per
    10x vectors at recall@10 >= 0.95)."""
    by_kind: dict[str, list[tuple[int, dict]]] = {}
    for n, r in rows:
        key = r["kind"].split(",")[0] + (f" + re-rank {r['rerank']}" if r.get("rerank") else "")
        by_kind.setdefault(key, []).append((n, r))
    lines = []
    for kind, pts in by_kind.items():
        for (n0, a), (n1, b) in zip(pts, pts[1:], strict=False):
            lines.append(f"| {kind} | {n0:,} -> {n1:,} | x{n1 / n0:.0f} | x{b['p50'] / a['p50']:.2f} | "
                         f"x{b['p95'] / a['p95']:.2f} | {a['recall']:.3f} -> {b['recall']:.3f} |")
    if lines:
        print("\n| index | sizes | vectors | p50 | p95 | recall@10 |\n|---|---|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
