"""IVF-Flat geometry for galclip predict: more inverted lists with nprobe re-tuned to the same
recall target, measured on a catalog's index vectors. For each nlist: build time (k-means +
add), the nprobe ``galclip index``'s tuner picks (doubling from 8 until recall@10 >= 0.95 on
its 1000 catalog queries), that recall, recall@64 against exact search at predict's depth, and
the search CPU-µs per query of one 8192-query chunk at depth 96 on one thread, by FAISS
(``batch_search``) and by the list scan (``ListScan``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/explore/ivf_nlist_scan.py REF_CATALOG \
        QUERY_CATALOG --nlist 316,632,1264
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def best_cpu_us(fn, n: int, reps: int = 3) -> float:
    out = []
    for _ in range(reps):
        c = cpu()
        fn()
        out.append((cpu() - c) / n * 1e6)
    return min(out)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a, b)) / truth.shape[1]
                          for a, b in zip(found, truth, strict=True)]))


def main() -> None:
    import faiss

    from galclip.eval.predict import _vectors
    from galclip.search.catalog import read_catalog_manifest, read_embeddings
    from galclip.search.index import (
        ListScan,
        batch_search,
        blas_threads,
        create_index,
        normalized,
        recall_queries,
        tune,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path)
    ap.add_argument("query", type=Path)
    ap.add_argument("--nlist", default="316,632,1264")
    ap.add_argument("--chunk", type=int, default=8192)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    vectors = normalized(read_embeddings(args.reference, "spectrum")[0])
    q = _vectors(args.query, read_catalog_manifest(args.query), ["spectrum"],
                 np.arange(args.chunk))["spectrum"]
    q = np.ascontiguousarray(q, np.float32)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    truth64 = exact.search(q[:2000], 64)[1]
    print("| nlist | build s | nprobe (tuned) | recall@10 (tuner) | recall@64 (query chunk) | "
          "vectors scanned / query | FAISS µs | list scan µs |")
    print("|---|---|---|---|---|---|---|---|")
    with blas_threads(1):
        for nlist in (int(x) for x in args.nlist.split(",")):
            t = time.perf_counter()
            index = create_index(vectors, "ivf", nlist=nlist)
            build = time.perf_counter() - t
            nprobe, rec10 = tune(index, "ivf", vectors, recall_queries(vectors, None))
            rec64 = recall(index.search(q[:2000], 64)[1], truth64)
            sizes = np.array([index.invlists.list_size(i) for i in range(nlist)])
            _, probes = index.quantizer.search(q, nprobe)
            scanned = sizes[probes].sum(1).mean()
            scan = ListScan.of(index)
            f = best_cpu_us(lambda index=index: batch_search(index, q, 96), len(q))
            s = best_cpu_us(lambda scan=scan: scan.search(q, 96), len(q))
            print(f"| {nlist} | {build:.1f} | {nprobe} | {rec10:.4f} | {rec64:.4f} | "
                  f"{scanned:.0f} | {f:.1f} | {s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
