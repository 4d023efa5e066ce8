"""Two ``galclip predict`` outputs of the same query catalog side by side (before/after a change
that moves values by float rounding, e.g. the IVF list scan by matrix products): per-row
differences of every column, and the 68 %/95 % interval coverage of each output against the
query catalog's own labels (the benchmark's synthetic catalogs carry redshift and log_mstar).

    python benchmarks/explore/predict_scan_compare.py BEFORE.parquet AFTER.parquet QUERY_CATALOG
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def truth(catalog: Path, props: list[str]) -> dict[str, np.ndarray]:
    """object_id and the labels of a catalog, in catalog order (its manifest's shard order)."""
    import json

    import pyarrow.parquet as pq

    manifest = json.loads((catalog / "manifest.json").read_text())
    cols = ["object_id", *props]
    parts = [pq.read_table(catalog / s["file"], columns=cols) for s in manifest["shards"]]
    return {c: np.concatenate([p.column(c).to_numpy() for p in parts]) for c in cols}


def batches(path: str, rows: int = 65536):
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=rows)


def compare(before: str, after: str, catalog: Path) -> None:
    props = ["redshift", "log_mstar"]
    t = truth(catalog, props)
    diffs: dict[str, list[np.ndarray]] = {}
    cover = {(v, p, lev): 0 for v in ("before", "after") for p in props for lev in (68, 95)}
    flips, n = 0, 0
    for b, a in zip(batches(before), batches(after), strict=True):
        sl = slice(n, n + b.num_rows)
        assert np.array_equal(b.column("object_id").to_numpy(), t["object_id"][sl])
        assert np.array_equal(a.column("object_id").to_numpy(), t["object_id"][sl])
        for c in b.schema.names:
            if c in ("object_id", "redshift_pdf", "unfamiliar"):
                continue
            x, y = (np.asarray(r.column(c).to_numpy(), np.float64) for r in (b, a))
            diffs.setdefault(c, []).append(np.abs(y - x))
        flips += int((b.column("unfamiliar").to_numpy(zero_copy_only=False)
                      != a.column("unfamiliar").to_numpy(zero_copy_only=False)).sum())
        pb, pa_ = (np.stack(r.column("redshift_pdf").to_numpy(zero_copy_only=False)) for r in (b, a))
        cb, ca = (np.cumsum(p, 1) / p.sum(1, keepdims=True) for p in (pb, pa_))
        diffs.setdefault("redshift_pdf (max |CDF diff| per row)", []).append(np.abs(ca - cb).max(1))
        for v, r in (("before", b), ("after", a)):
            for p in props:
                for lev in (68, 95):
                    lo, hi = (r.column(f"{p}_{s}{lev}").to_numpy() for s in ("lo", "hi"))
                    cover[v, p, lev] += int(((t[p][sl] >= lo) & (t[p][sl] <= hi)).sum())
        n += b.num_rows
    print(f"{n} rows; 'unfamiliar' differs on {flips}")
    print("| column | median | 99th pct | 99.9th pct | max | rows > 1e-5 |")
    print("|---|---|---|---|---|---|")
    for c, d in diffs.items():
        d = np.concatenate(d)
        q = np.percentile(d, [50, 99, 99.9])
        print(f"| {c} | {q[0]:.1e} | {q[1]:.1e} | {q[2]:.1e} | {d.max():.1e} | {(d > 1e-5).sum()} |")
    print("| coverage | before | after |")
    print("|---|---|---|")
    for p in props:
        for lev in (68, 95):
            print(f"| {p} {lev} % | {cover['before', p, lev] / n:.5f} | "
                  f"{cover['after', p, lev] / n:.5f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("catalog", type=Path)
    args = ap.parse_args()
    compare(args.before, args.after, args.catalog)


if __name__ == "__main__":
    main()
