"""CPU time of each stage of ``galclip predict`` on one chunk, on one thread.

Runs on the catalogs that ``benchmarks/predict_throughput.py --workdir W`` wrote (``W/ref``
with its index, ``W/query``): opens the reference as predict does (``--from spectrum``,
redshift and log_mstar), fits the calibration, reads the second chunk of the query and times
each stage on it with ``time.process_time`` (FAISS on one OpenMP thread, as on predict's
worker threads), best of ``--repeats``: the IVF search in catalog order (``index.search``) and
in list order (``batch_search``, what predict runs) at predict's depth and at depths 1 and 10
(how much of the search is the top-k heap rather than the scan), then the neighbour summaries,
the output columns (the PIT recalibration apart, and block by block inside the summaries as
predict runs it) and the Parquet write. CPU microseconds per galaxy.

    PYTHONPATH=src python benchmarks/explore/predict_profile.py --workdir W
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def timer(repeats: int, n: int):
    """``tm(name, fn)``: run ``fn`` ``repeats`` times, print the best CPU-us per galaxy, return
    its result."""
    def tm(name: str, fn):
        best, out = np.inf, None
        for _ in range(repeats):
            t = time.process_time()
            out = fn()
            best = min(best, time.process_time() - t)
        print(f"| {name} | {best / n * 1e6:.1f} |", flush=True)
        return out
    return tm


def main() -> None:
    import faiss

    import galclip.eval.predict as P
    from galclip.search.index import batch_search
    from galclip.search.ood import load_reference
    from galclip.search.results import TableWriter

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--chunk-rows", type=int, default=P.CHUNK_ROWS)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    faiss.omp_set_num_threads(1)
    work = Path(args.workdir)
    ref = P.open_reference(work / "ref", "spectrum", ["redshift", "log_mstar"])
    qman = P.check_query(work / "query", ref)
    cal = P.fit_calibration(ref, P.K, args.chunk_rows)
    load_reference(ref.catalog, "spectrum")
    chunks = P.iter_query(work / "query", qman, ["spectrum"], args.chunk_rows)
    next(chunks)
    ids, vec = next(chunks)
    s = ref.searchers["spectrum"]
    q = np.ascontiguousarray(vec["spectrum"], np.float32)
    depth = P.K  # the fetch depth predict asks for, as Searcher.search_with_kth computes it
    depth = max(int(np.ceil(depth / max(s.allowed[s.positions_rows].mean(), 1e-3) * 1.1))
                + P.FETCH_MARGIN, 11)
    tm = timer(args.repeats, len(ids))
    print(f"| stage ({len(ids)} galaxies, search depth {depth}) | CPU-us per galaxy |")
    print("|---|---|")
    tm(f"search, catalog order, depth {depth}", lambda: s.index.search(q, depth))
    for d in (1, 10, depth):
        tm(f"search, list order, depth {d}", lambda d=d: batch_search(s.index, q, d))
    (rows, w, dist), ood = tm("neighbours + OOD (search included)",
                              lambda: P.neighbours_and_ood(ref, vec, P.K, None))
    est = tm("summaries (quantiles, density, mean)",
             lambda: P.estimate(ref.labels, rows, w, dist, ref.z_col, ref.grid))
    tm("  of which the redshift density", lambda: P.raw_pdf(
        np.where(rows >= 0, ref.labels[np.maximum(rows, 0), ref.z_col], np.nan), w, ref.grid,
        (est.raw[:, 0, 1, ref.z_col] - est.raw[:, 0, 0, ref.z_col]) / 2))
    tm("output columns (intervals, PIT recalibration)", lambda: P.chunk_columns(ref, cal, est))
    est = tm("summaries with the density recalibrated block by block (as predict runs them)",
             lambda: P.estimate(ref.labels, rows, w, dist, ref.z_col, ref.grid, cal.pit))
    cols = tm("  + output columns", lambda: P.chunk_columns(ref, cal, est))
    table = P.to_arrow(ids, {**cols, **ood})

    with tempfile.TemporaryDirectory() as tmp:    # one file, 8 chunks: per-file costs shared
        def write():
            w = TableWriter(Path(tmp) / "p.parquet", P.METADATA_KEY, {}, dense=True)
            for _ in range(8):
                w.write(table)
            w.close()
        timer(args.repeats, 8 * len(ids))("Parquet write (as predict writes)", write)
    tm("whole chunk (predict_chunk)", lambda: P.predict_chunk(ref, cal, P.K, ids, vec, same=False))


if __name__ == "__main__":
    main()
