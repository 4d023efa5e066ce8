"""Build the FAISS index of each modality of an embedding catalog.

Exact (flat) below --threshold vectors, approximate (IVF by default, or HNSW) above; an
approximate index is tuned to --target-recall and its recall@10 against exact search on a
sample is printed and saved. Index files are written into the catalog folder.

Example:  galclip index runs/demo/catalog --kind auto
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    p.add_argument("--kind", choices=["auto", "flat", "ivf", "hnsw"], default="auto")
    p.add_argument("--threshold", type=int, default=50_000,
                   help="auto: exact below this many vectors, approximate above")
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~sqrt(N))")
    p.add_argument("--modalities", default=None, help="default: every modality of the catalog")


def run(args: argparse.Namespace) -> int:
    from galclip.search.catalog import read_catalog_manifest
    from galclip.search.index import build_index

    mods = (args.modalities.split(",") if args.modalities
            else read_catalog_manifest(args.catalog)["modalities"])
    for m in mods:
        build_index(args.catalog, m, kind=args.kind, threshold=args.threshold,
                    target_recall=args.target_recall, nlist=args.nlist)
    return 0
