"""Build the FAISS index of each modality of an embedding catalog.

Exact (flat) below --threshold vectors, approximate (IVF by default, or HNSW) above; an
approximate index is tuned to --target-recall and its recall@10 against exact search on a
sample is printed and saved. Index files are written into the catalog folder; --ood-templates
also writes the template basis of the OOD score's redshift check for spectrum queries
(ood-templates.npz, from galclip's simulated SEDs; needs galclip[sim], ~1 min; the demo writes it).

Example:  galclip index runs/demo/catalog --kind auto
"""
from __future__ import annotations

import argparse

from galclip.argtypes import csv_choices, float_range, int_range
from galclip.modalities import NAMES
from galclip.search.index import COMPRESS_THRESHOLD, EXACT_THRESHOLD, KINDS, TARGET_RECALL
from galclip.search.ivfpq import PART_VECTORS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    p.add_argument("--kind", choices=KINDS,
                   default="auto", help="ivfpq / ivfsq8: compressed, built in chunks, in parts "
                                        f"(auto picks ivfsq8 from {COMPRESS_THRESHOLD:,} vectors)")
    p.add_argument("--threshold", type=int_range(0), default=EXACT_THRESHOLD,
                   help="auto: exact below this many vectors, approximate above (default %(default)s)")
    p.add_argument("--target-recall", type=float_range(0, 1, inclusive_lo=False), default=TARGET_RECALL,
                   help="recall@10 the approximate index is tuned to, in (0, 1] (default %(default)s)")
    p.add_argument("--nlist", type=int_range(1, 1 << 20), default=None,
                   help="IVF lists (default max(sqrt(N), N/500): lists of ~500 vectors)")
    p.add_argument("--modalities", type=csv_choices(NAMES), default=None,
                   help="default: every modality of the catalog")
    p.add_argument("--pq-m", type=int_range(1, 1024), default=None,
                   help="ivfpq: bytes per vector (default dim/4)")
    p.add_argument("--part-vectors", type=int_range(1), default=None,
                   help=f"ivfpq/ivfsq8: vectors per index part file (default {PART_VECTORS:,})")
    p.add_argument("--rerank", type=int_range(0, 100), default=0, metavar="R",
                   help="ivfpq/ivfsq8: keep the vectors on disk as float16 (2 B per dimension, "
                        "memory-mapped, not loaded) and order each query's R x k best by code "
                        "by exact inner product; lifts recall past the codes' ceiling "
                        "(default 0: off; 10 is a good start)")
    p.add_argument("--ood-templates", action="store_true",
                   help="also write the template basis of the OOD score's redshift check "
                        "(needs galclip[sim], ~1 min; see docs/search.md)")


def run(args: argparse.Namespace) -> int:
    from galclip.search.catalog import read_catalog_manifest
    from galclip.search.index import build_index

    mods = (args.modalities if args.modalities
            else read_catalog_manifest(args.catalog)["modalities"])
    for m in mods:
        build_index(args.catalog, m, kind=args.kind, threshold=args.threshold,
                    target_recall=args.target_recall, nlist=args.nlist,
                    compress={"pq_m": args.pq_m, "part_vectors": args.part_vectors,
                              "rerank": args.rerank})
    if args.ood_templates:
        return write_templates(args.catalog)
    return 0


def write_templates(catalog) -> int:
    """The OOD redshift check's basis beside the index (needs the simulator stack)."""
    import sys

    try:
        from galclip.eval.template_fit import write_catalog_basis
    except ImportError as e:
        print(f"galclip index: --ood-templates needs galclip[sim] ({e})", file=sys.stderr)
        return 2
    print(f"OOD redshift-check templates: {write_catalog_basis(catalog)}")
    return 0
