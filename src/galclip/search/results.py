"""What a search result says beyond its table: the query's own redshift beside the spread of
its neighbours' redshifts, and the table written to CSV, Parquet or ECSV.

The spread is the median and the 16th-84th percentile range of the neighbours' redshifts and,
when the query's redshift is known, the median |dz|/(1+z) from it (the photo-z convention).
"""
from __future__ import annotations

import sys
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


def check_format(path: str | Path) -> str:
    """The table format of ``path`` from its suffix; a ValueError names the allowed ones."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {path}: unknown table format {path.suffix!r}; use one of "
                         f"{', '.join(FORMATS)}")
    return fmt


def write_table(rows: list[dict[str, Any]], path: str | Path, meta: dict[str, Any]) -> Path:
    """Write result rows to ``path``; the format follows the suffix (.csv, .parquet, .ecsv).

    ``meta`` (the query) goes into the Parquet schema metadata / ECSV header; CSV is the bare
    table. An empty result writes the header only.
    """
    import pyarrow as pa

    check_format(path)
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ["rank", "object_id"]
    writer = TableWriter(path, "galclip_query", meta)
    writer.write(pa.table({c: [r.get(c) for r in rows] for c in columns}))
    return writer.close()


class TableWriter:
    """A table written in pieces to .parquet (streamed, row group by row group), .csv
    (streamed; list columns, which CSV cannot hold, are left out with a note) or .ecsv (held
    until ``close``), atomically; ``meta`` under ``key`` in the Parquet schema metadata or the
    ECSV header. ``dense=True`` says that the values are nearly all distinct (floats, ids):
    Parquet then skips the dictionary encoding it would try and abandon on every column, and the
    statistics of list columns; the values read back are the same."""

    def __init__(self, path: str | Path, key: str, meta: dict[str, Any], dense: bool = False):
        from galclip.storage import atomic_write

        self.path, self.key, self.meta, self.dense = Path(path), key, meta, dense
        self.fmt = check_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ctx = atomic_write(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer, self._held, self._dropped = None, [], []

    def write(self, table) -> None:
        import json

        if self.fmt == "ecsv":
            self._held.append(table)
            return
        if self.fmt == "csv":
            table = self._flat(table)
        if self._writer is None:
            self._writer = self._open(table.schema.with_metadata({self.key: json.dumps(self.meta)}))
        self._writer.write_table(table.cast(self._writer.schema) if self.fmt == "parquet" else table)

    def _flat(self, table):
        lists = [f.name for f in table.schema if _is_list(f.type)]
        if lists and not self._dropped:
            self._dropped = lists
            print(f"note: {self.path}: CSV holds no list column; {lists} left out (write "
                  f".parquet or .ecsv to keep them)", file=sys.stderr)
        return table.drop_columns(lists)

    def _open(self, schema):
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            if not self.dense:
                return pq.ParquetWriter(self._tmp, schema)
            scalar = [f.name for f in schema if not _is_list(f.type)]
            return pq.ParquetWriter(self._tmp, schema, use_dictionary=False,
                                    write_statistics=scalar)
        import pyarrow.csv as pacsv

        return pacsv.CSVWriter(self._tmp, schema)

    def close(self) -> Path:
        try:
            if self.fmt == "ecsv":
                self._write_ecsv(self.meta)
            elif self._writer is not None:
                self._writer.close()
            else:
                open(self._tmp, "w").close()
        except BaseException:
            self._ctx.__exit__(*sys.exc_info())
            raise
        self._ctx.__exit__(None, None, None)
        return self.path

    def _write_ecsv(self, meta: dict[str, Any]) -> None:
        import pyarrow as pa
        from astropy.table import Table

        table = pa.concat_tables(self._held) if self._held else pa.table({})
        t = Table({c: _astropy_column(table.column(c)) for c in table.column_names})
        t.meta[self.key] = meta
        t.write(self._tmp, format="ascii.ecsv", overwrite=True)


def _astropy_column(col):
    """An Arrow column for astropy: (N, L) arrays for fixed-size lists, else :func:`_masked`."""
    import pyarrow as pa

    if pa.types.is_fixed_size_list(col.type):
        col = col.combine_chunks()
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    return _masked(col)


def _masked(col):
    """An Arrow column as a (masked where null) numpy array for astropy."""
    arr = col.to_numpy(zero_copy_only=False)
    if col.null_count == 0:
        return arr
    null = col.is_null().to_numpy(zero_copy_only=False)
    filled = np.where(null, 0, arr).astype(col.type.to_pandas_dtype()) if col.type != "null" else arr
    return np.ma.MaskedArray(filled, mask=null)


def _is_list(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_fixed_size_list(arrow_type) or pa.types.is_list(arrow_type)
