"""The IVF list scan by matrix products (``galclip.search.index.ListScan``) and the variants
measured before it was chosen, on one chunk of a query catalog against a reference's saved
IVF-Flat index, one thread, CPU-µs per query at predict's depth (96), best of 2:

- the order in which the lists meet each query's heap: all probes by list id; its nearest list
  first, then the rest (what ListScan does); nearest, next two, the rest; one pass per probe rank;
- selection by ``np.argpartition`` instead of FAISS's heaps (one (1024, ~2500) block);
- the batch size from which the scan beats FAISS's own search (``batch_search``).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/explore/list_scan_variants.py REF QUERY
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ivf_nlist_scan import best_cpu_us, cpu  # noqa: E402


def best_us(fn, n: int, reps: int = 2) -> float:
    """Best CPU-µs per item of ``reps`` runs (``ivf_nlist_scan.best_cpu_us``)."""
    return best_cpu_us(fn, n, reps)


def scan_in_phases(scan, q: np.ndarray, k: int, phases: list[slice]):
    """ListScan.search with the probe columns met in the given groups, in order."""
    import faiss

    from galclip.search.index import coarse_assignment, queries_by_list

    _, probes = coarse_assignment(scan.index, q)
    heap = faiss.ResultHeap(len(q), k, keep_max=True)
    for cols in phases:
        for lst, who in queries_by_list(probes[:, cols], scan.index.nlist):
            ids, x = scan.lists[lst]
            if len(ids):
                heap.add_result_subset(who, q[who] @ x.T, ids)
    heap.finalize()
    return heap.D, heap.I


def main() -> None:
    import faiss

    from galclip.eval.predict import _vectors
    from galclip.search.catalog import read_catalog_manifest
    from galclip.search.index import ListScan, batch_search, blas_threads, load_index

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", type=Path)
    ap.add_argument("query", type=Path)
    ap.add_argument("--chunk", type=int, default=8192)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    index = load_index(args.reference, "spectrum").index
    scan = ListScan.of(index)
    q = np.ascontiguousarray(_vectors(args.query, read_catalog_manifest(args.query), ["spectrum"],
                                      np.arange(args.chunk))["spectrum"], np.float32)
    p = index.nprobe
    with blas_threads(1):
        print(f"nlist {index.nlist}, nprobe {p}, {len(q)} queries, depth 96")
        print("| variant | CPU-µs / query |\n|---|---|")
        print(f"| FAISS (batch_search) | {best_us(lambda: batch_search(index, q, 96), len(q)):.1f} |")
        for name, phases in (("by list id", [slice(0, p)]),
                             ("nearest list first (ListScan)", [slice(0, 1), slice(1, p)]),
                             ("nearest, next 2, rest", [slice(0, 1), slice(1, 3), slice(3, p)]),
                             ("one pass per probe rank", [slice(r, r + 1) for r in range(p)])):
            us = best_us(lambda ph=phases: scan_in_phases(scan, q, 96, ph), len(q))
            print(f"| {name} | {us:.1f} |")
        block = np.random.default_rng(0).random((1024, 2531), dtype=np.float32)
        c = cpu()
        np.argpartition(-block, 95, axis=1)
        print(f"| np.argpartition of 2531 scores, top 96 (selection only) | "
              f"{(cpu() - c) / 1024 * 1e6:.1f} |")
        print("\n| queries | a probed list, on average | FAISS µs | list scan µs |\n|---|---|---|---|")
        for n in (128, 256, 512, 1024, 2048, len(q)):
            qq = q[:n]
            reps = max(2, 2 * len(q) // n)
            f = best_us(lambda qq=qq: batch_search(index, qq, 96), n, reps)
            s = best_us(lambda qq=qq: scan_in_phases(scan, qq, 96, [slice(0, 1), slice(1, p)]),
                        n, reps)
            print(f"| {n} | {n * p / index.nlist:.1f} | {f:.1f} | {s:.1f} |")


if __name__ == "__main__":
    main()
