"""CPU time of everything ``galclip predict`` does to one chunk after the FAISS search, for two
versions of the code side by side in one process, on the same search results.

Loads ``galclip`` from two source trees (``--before`` and ``--after``, e.g. ``git worktree add
--detach /tmp/before <commit>`` and this checkout's ``src``), opens the reference of
``benchmarks/predict_throughput.py --workdir W`` once, searches the second query chunk once, and
then times, alternating the versions, each stage that follows the search: the first k allowed
neighbours (``Searcher._one``), their weights (``combine``), the summaries (``estimate``, given
the PIT map where the version takes it, as its predict does), the output columns and the Arrow
table. Prints the best of ``--repeats`` in CPU-us per galaxy and whether the two tables are equal.
On a shared machine the search itself varies too much to compare versions this finely.

    python benchmarks/explore/predict_post_search_ab.py --before /tmp/before/src --after src --workdir W
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def load(src: str):
    """``galclip.eval.predict`` of the source tree ``src`` (earlier copies dropped)."""
    for name in [m for m in sys.modules if m == "galclip" or m.startswith("galclip.")]:
        del sys.modules[name]
    sys.path.insert(0, src)
    try:
        import galclip.eval.predict as module
    finally:
        sys.path.pop(0)
    return module


def stages(P, ref, cal, s, p, n):
    """CPU seconds of each post-search stage of one version, and its output table."""
    searcher = ref.searchers["spectrum"]
    takes_pit = "pit" in P.estimate.__code__.co_varnames
    out, t = {}, time.process_time()

    def mark(name):
        nonlocal t
        now = time.process_time()
        out[name], t = now - t, now

    r, d, _ = P.Searcher._one(searcher, s, p, P.K, None)
    mark("first k allowed neighbours")
    rows, w, dist = P.combine([(r, d.astype(np.float64))])
    mark("weights (combine)")
    est = P.estimate(ref.labels, rows, w, dist, ref.z_col, ref.grid, *([cal.pit] if takes_pit else []))
    mark("summaries (estimate)")
    cols = P.chunk_columns(ref, cal, est)
    mark("output columns")
    table = P.to_arrow(np.arange(n), cols)
    mark("Arrow table")
    return out, table


def main() -> None:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    versions = [load(args.before), load(args.after)]
    P = versions[1]
    work = Path(args.workdir)
    ref = P.open_reference(work / "ref", "spectrum", ["redshift", "log_mstar"])
    cal = P.fit_calibration(ref, P.K, P.CHUNK_ROWS)
    chunks = P.iter_query(work / "query", P.check_query(work / "query", ref), ["spectrum"],
                          P.CHUNK_ROWS)
    next(chunks)
    _, vec = next(chunks)
    from galclip.search.index import batch_search

    s, p = batch_search(ref.searchers["spectrum"].index, vec["spectrum"], 96)
    n = len(s)
    best: list[dict[str, float]] = [{}, {}]
    tables = [None, None]
    for rep in range(args.repeats):
        for i in ((0, 1) if rep % 2 == 0 else (1, 0)):
            times, tables[i] = stages(versions[i], ref, cal, s, p, n)
            for name, v in times.items():
                best[i][name] = min(best[i].get(name, np.inf), v)
    print(f"tables equal: {tables[0].equals(tables[1])}")
    print("| stage | before | after |\n|---|---|---|")
    for name in best[0]:
        print(f"| {name} | {best[0][name] / n * 1e6:.2f} | {best[1][name] / n * 1e6:.2f} |")
    print(f"| all | {sum(best[0].values()) / n * 1e6:.2f} | {sum(best[1].values()) / n * 1e6:.2f} |")


if __name__ == "__main__":
    main()
