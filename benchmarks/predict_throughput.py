"""Throughput and peak memory of ``galclip predict`` on a large synthetic catalog.

A labelled reference catalog (default 10^5 rows; indexed as ``galclip index`` would: IVF-Flat
tuned to recall@10 >= 0.95 above 50k vectors) and a query catalog (default 10^6 rows, written
shard by shard, never all in memory) of clustered unit vectors (embedding-like: a galaxy's
redshift and mass follow its cluster) are written to a scratch folder; then ``galclip
predict`` runs in a child process (``--from spectrum``, redshift and log_mstar, redshift
density on 300 bins, the default k and chunk), timed, and its peak resident memory read from
``getrusage(RUSAGE_CHILDREN)``. A second run with half the chunk shows that memory follows the
chunk, not the catalog. The child runs the ``galclip`` on ``PYTHONPATH``: point it at another
checkout's ``src`` to time that version on the same catalogs (``--workdir`` keeps them).

    .venv/bin/python benchmarks/predict_throughput.py --reference 100000 --query 1000000
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHA = "0" * 64


def clustered(n: int, dim: int, seed: int, centres: np.ndarray):
    """Unit vectors near random cluster centres, with labels that follow the cluster."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, len(centres), n)
    x = centres[c] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    z = (0.02 + 0.58 * (c / len(centres)) + rng.normal(0, 0.01, n)).astype(np.float32)
    mass = 9 + 2.5 * ((c * 7919) % len(centres)) / len(centres) + rng.normal(0, 0.2, n)
    return x.astype(np.float32), z, mass


def write_streamed(path: Path, n: int, dim: int, seed: int, centres: np.ndarray,
                   rows_per_shard: int = 4096) -> None:
    """A catalog written shard by shard (as ``galclip embed`` does), never held whole."""
    from galclip.search.catalog import (
        _catalog_manifest,
        _shard_table,
        catalog_shard_name,
        write_table_atomic,
    )

    path.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, lo in enumerate(range(0, n, rows_per_shard)):
        m = min(rows_per_shard, n - lo)
        x, z, mass = clustered(m, dim, seed * 100_003 + i, centres)
        meta = {"object_id": np.arange(lo, lo + m, dtype=np.int64) + seed * 10**9,
                "ra": np.zeros(m), "dec": np.zeros(m), "redshift": z, "log_mstar": mass}
        table = _shard_table(meta, {"spectrum": x}, {"spectrum": np.ones(m, bool)}, SHA)
        entries.append(write_table_atomic(path / catalog_shard_name(i), table, path))
    _catalog_manifest(path, entries, ["spectrum"], None, SHA, {},
                      {"command": "benchmarks/predict_throughput.py"})


def run_predict(query: Path, ref: Path, out: Path, chunk: int, workers: int | None = None
                ) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in GB) of one ``galclip predict`` child. On a
    shared machine the CPU seconds say more than the wall time: N cores to itself would take
    about CPU / N (the search and the FFTs use every core)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "galclip.cli", "predict", str(query), "--reference",
                    str(ref), "--out", str(out), "--properties", "redshift,log_mstar",
                    "--chunk-rows", str(chunk), *(["--workers", str(workers)] if workers else [])],
                   check=True)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if after.ru_maxrss <= before.ru_maxrss:
        print("note: the peak of this child did not exceed an earlier child's; memory figure "
              "is an upper bound", file=sys.stderr)
    return dt, cpu, after.ru_maxrss / 1e6


def main() -> None:
    from galclip.eval.predict import CHUNK_ROWS
    from galclip.search.index import build_index

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=int, default=100_000)
    p.add_argument("--query", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--chunks", default=f"{CHUNK_ROWS // 2},{CHUNK_ROWS}",
                   help="comma-separated --chunk-rows to time (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="--workers of galclip predict "
                   "(default: its own; leave out for versions without the option)")
    args = p.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="galclip-predict-bench-"))
    centres = np.random.default_rng(42).normal(size=(args.clusters, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    t = time.perf_counter()
    for name, n, seed in (("ref", args.reference, 1), ("query", args.query, 2)):
        if not (work / name / "manifest.json").exists():   # a --workdir keeps them for reruns
            write_streamed(work / name, n, args.dim, seed, centres)
    info = build_index(work / "ref", "spectrum", verbose=False).info
    print(f"wrote catalogs and the {info['kind']} index in {time.perf_counter() - t:.0f} s",
          file=sys.stderr)
    print(f"load average before: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    for chunk in (int(c) for c in args.chunks.split(",")):
        load = os.getloadavg()[0]
        dt, cpu, gb = run_predict(work / "query", work / "ref", work / f"pred-{chunk}.parquet",
                                  chunk, args.workers)
        print(f"| {args.query:,} | {args.reference:,} ({info['kind']}, search param "
              f"{info.get('search_param')}) | {chunk} | {dt:.1f} s | {args.query / dt:,.0f} "
              f"galaxies/s | {cpu:.0f} CPU s ({args.query / cpu:,.0f} galaxies per CPU s) | "
              f"{gb:.2f} GB | load {load:.1f} -> {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
