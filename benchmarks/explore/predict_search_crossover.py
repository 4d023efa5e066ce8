"""Where exact (flat) search stops being cheaper than IVF for ``galclip predict``'s searches.

``galclip predict`` searches the reference's index once per chunk of queries (8192 by default)
at depth ~96 (k = 64 plus a margin for the calibration galaxies left out of the pool). For
references of N clustered 128-d unit vectors (``benchmarks/predict_throughput.py``'s generator),
this times one chunk's search on one thread (``faiss.omp_set_num_threads(1)``: predict runs
one worker thread per core) with a flat index (exact, BLAS) and with the IVF-Flat index that
``galclip index`` would build at that size (``default_nlist`` lists, nprobe raised from 8 until
recall@10 >= 0.95), through ``galclip.search.index.batch_search`` as predict calls it. CPU
microseconds per query, best of ``--repeats``.

    PYTHONPATH=src python benchmarks/explore/predict_search_crossover.py --sizes 5000,20000,50000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_us_per_query(index, queries: np.ndarray, depth: int, repeats: int) -> float:
    from galclip.search.index import batch_search

    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        batch_search(index, queries, depth)
        best = min(best, time.process_time() - t)
    return best / len(queries) * 1e6


def main() -> None:
    import faiss
    from predict_throughput import clustered

    from galclip.search.index import create_index, recall_queries, tune

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2000,5000,10000,20000,50000,100000")
    p.add_argument("--queries", type=int, default=8192)
    p.add_argument("--depth", type=int, default=96)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    faiss.omp_set_num_threads(1)
    centres = np.random.default_rng(42).normal(size=(2000, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = clustered(args.queries, 128, 2, centres)[0]
    print("| reference N | flat CPU-us/query | IVF nlist | nprobe | recall@10 | IVF CPU-us/query |")
    print("|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        vectors = clustered(n, 128, 1, centres)[0]
        flat = create_index(vectors, "flat")
        ivf = create_index(vectors, "ivf")
        nprobe, recall = tune(ivf, "ivf", vectors, recall_queries(vectors, None))
        print(f"| {n:,} | {cpu_us_per_query(flat, queries, args.depth, args.repeats):.0f} | "
              f"{ivf.nlist} | {nprobe} | {recall:.3f} | "
              f"{cpu_us_per_query(ivf, queries, args.depth, args.repeats):.0f} |", flush=True)


if __name__ == "__main__":
    main()
