"""Export an embedding catalog to another format: today HATS, the HEALPix-partitioned Parquet
that LSDB opens and cross-matches (``pip install 'galclip[hats]'``).

Examples (against the catalog `make demo` writes):
  galclip export runs/demo/catalog --hats runs/demo/catalog-hats
  galclip export runs/demo/catalog --hats runs/demo/catalog-hats --name galclip_demo --overwrite
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    p.add_argument("--hats", required=True, metavar="OUT",
                   help="write a HATS collection (catalog + margin cache) to this folder")
    p.add_argument("--name", default=None, help="HATS catalog name (default: the folder name)")
    p.add_argument("--partition-rows", type=int, default=None,
                   help="target rows per HEALPix partition (default: lsdb's choice)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    import time

    from galclip.search.hats_export import export_hats

    t0 = time.perf_counter()
    out = export_hats(args.catalog, args.hats, name=args.name, partition_rows=args.partition_rows,
                      overwrite=args.overwrite)
    print(f"HATS catalog written to {out} in {time.perf_counter() - t0:.1f} s; open it with "
          f"lsdb.open_catalog({str(out)!r})")
    return 0
