"""What a search result says beyond its table: the query's own redshift beside the spread of
its neighbours' redshifts, and the table written to CSV, Parquet or ECSV.

The spread is the median and the 16th-84th percentile range of the neighbours' redshifts and,
when the query's redshift is known, the median |dz|/(1+z) from it (the photo-z convention).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FORMATS = {".csv": "csv", ".parquet": "parquet", ".ecsv": "ecsv"}


def redshift_summary(query_z: float | None, neighbours: list[dict[str, Any]]) -> dict[str, Any]:
    """{"query": z or None, "n": neighbours with a redshift, "median", "p16", "p84",
    "median_abs_dz_1pz"} (None where not computable)."""
    zs = np.array([n["redshift"] for n in neighbours if n.get("redshift") is not None], float)
    out: dict[str, Any] = {"query": query_z, "n": int(len(zs)), "median": None, "p16": None,
                           "p84": None, "median_abs_dz_1pz": None}
    if len(zs):  # one sort for the three percentiles (a server answers many of these)
        p16, median, p84 = np.percentile(zs, (16, 50, 84)).tolist()
        out.update(median=median, p16=p16, p84=p84)
        if query_z is not None:
            out["median_abs_dz_1pz"] = float(np.median(np.abs(zs - query_z) / (1 + query_z)))
    return out


def summary_line(s: dict[str, Any]) -> str:
    """One line for the terminal, e.g. ``query z = 0.312; neighbours z median 0.30 ...``."""
    q = "unknown" if s["query"] is None else f"{s['query']:.4f}"
    if not s["n"]:
        return f"# query z = {q}; no neighbour has a redshift"
    line = (f"# query z = {q}; neighbours' z: median {s['median']:.4f}, 68% range "
            f"{s['p16']:.4f}-{s['p84']:.4f} ({s['n']} with z)")
    if s["median_abs_dz_1pz"] is not None:
        line += f", median |dz|/(1+z) from the query {s['median_abs_dz_1pz']:.4f}"
    return line


def write_table(rows: list[dict[str, Any]], path: str | Path, meta: dict[str, Any]) -> Path:
    """Write result rows to ``path``; the format follows the suffix (.csv, .parquet, .ecsv).

    ``meta`` (the query) goes into the Parquet schema metadata / ECSV header; CSV is the bare
    table. An empty result writes the header only.
    """
    import json

    import pyarrow as pa

    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {path}: unknown table format {path.suffix!r}; use one of "
                         f"{', '.join(FORMATS)}")
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["rank", "object_id"]
    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table.replace_schema_metadata({"galclip_query": json.dumps(meta)}), path)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        from astropy.table import Table

        t = Table({c: _masked(table.column(c)) for c in columns})
        t.meta["galclip_query"] = meta
        t.write(path, format="ascii.ecsv", overwrite=True)
    return path


def _masked(col):
    """An Arrow column as a (masked where null) numpy array for astropy."""
    arr = col.to_numpy(zero_copy_only=False)
    if col.null_count == 0:
        return arr
    null = col.is_null().to_numpy(zero_copy_only=False)
    filled = np.where(null, 0, arr).astype(col.type.to_pandas_dtype()) if col.type != "null" else arr
    return np.ma.MaskedArray(filled, mask=null)
