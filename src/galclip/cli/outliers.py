"""Score every galaxy of an embedding catalog for how unusual it is: mismatch_score (its image
and spectrum agree less than those of galaxies at similar redshift and brightness, a robust
z-score) and rarity_image / rarity_spectrum (how sparse its neighbourhood is in that space, a
quantile in the catalog). Larger = more unusual. --top N keeps the N most unusual by --by, most
unusual first, and prints them. See docs/predict.md for what the scores mean and do not mean.

Examples (against the catalog `make demo` writes):
  galclip outliers runs/demo/catalog --out outliers.parquet
  galclip outliers runs/demo/catalog --out unusual.csv --top 20 --by rarity_spectrum
"""
from __future__ import annotations

import argparse

from galclip.argtypes import int_range


def add_arguments(p: argparse.ArgumentParser) -> None:
    from galclip.eval.outliers import K_RARITY, PEERS, SCORES

    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    p.add_argument("--out", required=True, help="output table: .parquet, .csv or .ecsv")
    p.add_argument("--top", type=int_range(1), default=None,
                   help="keep only the N most unusual galaxies by --by (default: all, in "
                        "catalog order)")
    p.add_argument("--by", choices=SCORES, default="mismatch_score",
                   help="score that orders --top (default %(default)s)")
    p.add_argument("--peers", type=int_range(3), default=PEERS,
                   help="galaxies of similar redshift and brightness a pair is compared with "
                        "(default %(default)s)")
    p.add_argument("--k", type=int_range(1, 1024), default=K_RARITY,
                   help="neighbours of the rarity density estimate (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from galclip.eval.outliers import find_outliers

    table = find_outliers(args.catalog, args.out, top_n=args.top, by=args.by, peers=args.peers,
                          k=args.k)
    print(f"wrote {table.num_rows} rows to {args.out}")
    if args.top:
        print(f"{'object_id':>14} {'mismatch':>9} {'rar_img':>8} {'rar_spec':>8}")
        for r in table.to_pylist():
            print(f"{r['object_id']:>14} {r['mismatch_score']:>9.2f} {r['rarity_image']:>8.4f} "
                  f"{r['rarity_spectrum']:>8.4f}")
    return 0
