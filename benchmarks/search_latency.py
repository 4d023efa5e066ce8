"""Search latency (p50/p95, k = 10, one query at a time) on synthetic clustered catalogs.

Exact (flat inner product) against the approximate indexes galclip builds (IVF-Flat, HNSW),
each tuned by galclip to recall@10 >= 0.95 on held-in queries from both modalities. Vectors are
unit vectors around cluster centres (embedding-like; isotropic random vectors would make every
approximate index look bad). At 100k the whole `Catalog.search` path is also timed (catalog
written to Parquet, index loaded, metadata assembled per result).

    .venv/bin/python benchmarks/search_latency.py --sizes 100000 1000000 --dim 256
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def clustered(n: int, dim: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for lo in range(0, n, 100_000):  # in chunks to bound peak memory
        m = min(100_000, n - lo)
        x[lo:lo + m] = centres[rng.integers(0, n_clusters, m)] + 0.35 * rng.normal(size=(m, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


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
    return {"kind": kind, "build_s": build, "param": param, "recall": recall,
            "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95)}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--hnsw-max", type=int, default=200_000,
                    help="skip HNSW above this size (its build is slow on 2 cores)")
    args = ap.parse_args()
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, dim {args.dim}, k=10, "
          f"single-query latency over {args.queries} queries")
    print("| N | index | build s | search param | recall@10 | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        vectors = clustered(n, args.dim, n_clusters=max(50, n // 1000), seed=0)
        # the other modality: each galaxy's vector plus noise of norm ~0.5 (cosine ~0.9 to its
        # counterpart), as for an aligned model; its vectors are the cross-modal queries
        noise = np.random.default_rng(1).normal(size=vectors.shape).astype(np.float32)
        other = vectors + (0.5 / np.sqrt(args.dim)) * noise
        del noise
        other /= np.linalg.norm(other, axis=1, keepdims=True)
        kinds = ["flat", "ivf"] + (["hnsw"] if n <= args.hnsw_max else [])
        for kind in kinds:
            r = bench_index(vectors, other, kind, args.queries)
            print(f"| {n:,} | {r['kind']} | {r['build_s']:.1f} | {r['param'] or '-'} | "
                  f"{r['recall']:.3f} | {r['p50']:.2f} | {r['p95']:.2f} |", flush=True)
        if n <= 200_000:
            for label, (p50, p95) in bench_api(vectors, other, min(args.queries, 200)).items():
                print(f"| {n:,} | Catalog.search, {label} | | | | {p50:.2f} | {p95:.2f} |", flush=True)
        del vectors, other


if __name__ == "__main__":
    main()
