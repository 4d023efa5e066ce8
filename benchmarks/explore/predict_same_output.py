"""Whether two ``galclip predict`` Parquet outputs hold the same values: every column of every
row (read in batches, ``pyarrow`` ``equals``) and the ``galclip_predict`` metadata apart from
``command`` (which names the output path).

    python benchmarks/explore/predict_same_output.py A.parquet B.parquet
"""
from __future__ import annotations

import json
import sys


def main() -> None:
    import pyarrow.parquet as pq

    a, b = (pq.ParquetFile(p) for p in sys.argv[1:3])
    if a.metadata.num_rows != b.metadata.num_rows:
        sys.exit(f"different row counts: {a.metadata.num_rows} vs {b.metadata.num_rows}")
    n, names = 0, a.schema_arrow.names
    if names != b.schema_arrow.names:
        sys.exit(f"different columns: {names} vs {b.schema_arrow.names}")
    for x, y in zip(a.iter_batches(65536), b.iter_batches(65536), strict=True):
        for c in names:
            if not x.column(c).equals(y.column(c)):
                sys.exit(f"column {c} differs in rows {n}..{n + x.num_rows}")
        n += x.num_rows
    ma, mb = (json.loads(f.schema_arrow.metadata[b"galclip_predict"]) for f in (a, b))
    ma.pop("command"), mb.pop("command")
    print(f"{n} rows x {len(names)} columns identical; metadata identical but for the command: "
          f"{ma == mb}")
    sys.exit(0 if ma == mb else 1)


if __name__ == "__main__":
    main()
