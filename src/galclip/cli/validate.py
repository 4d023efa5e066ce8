"""Check what galclip wrote, reading every byte: a dataset folder (manifest, every shard, sha256
checksums, column shapes, and the values: unique object ids; finite arrays, non-negative ivars,
labels finite or NaN and in range), or an embedding catalog (shard checksums and row counts, the
model fingerprint, embedding dimensions, finite unit-norm embeddings) with its FAISS indexes
(built for this catalog, file checksums, vector counts, row numbers).

Examples:  galclip validate runs/demo/data
           galclip validate runs/demo/catalog
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="dataset or catalog folder (holds manifest.json)")
    p.add_argument("--no-checksums", action="store_true", help="skip the sha256 check (faster)")
    p.add_argument("--no-content", action="store_true",
                   help="skip the value checks (ids, NaN/inf, ranges); structure only")


def run(args: argparse.Namespace) -> int:
    from galclip.data.format import validate_dataset

    if _format(args.path) == "galclip-catalog":
        return _catalog(args)
    m = validate_dataset(args.path, verify_checksums=not args.no_checksums,
                         content=not args.no_content)
    cols = ", ".join(f"{k}{tuple(v['shape']) if v['shape'] else ''}" for k, v in m["columns"].items())
    checked = "structure" if args.no_content else "structure and content"
    print(f"{args.path}: valid {m['format']} v{m['version']} ({checked}), {m['n_rows']} rows in "
          f"{len(m['shards'])} shards\ncolumns: {cols}")
    return 0


def _format(path: str) -> str | None:
    import json
    from pathlib import Path

    from galclip.storage import MANIFEST

    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None               # validate_dataset says what is wrong


def _catalog(args: argparse.Namespace) -> int:
    from galclip.search.verify import validate_catalog

    r = validate_catalog(args.path, checksums=not args.no_checksums)
    m = r["manifest"]
    emb = ", ".join(f"{k} {n} x {m['embedding_dim'][k]}" for k, n in r["embeddings"].items())
    model = "model file checked" if r["model_checked"] else "model file not found (not checked)"
    idx = "; ".join(f"{k}: {i['kind']}, {i['n_vectors']} vectors"
                    f"{'' if i['checksums'] else ' (built before checksums were recorded)'}"
                    for k, i in r["indexes"].items()) or "none"
    print(f"{args.path}: valid {m['format']} v{m['version']}, {m['n_rows']} rows in "
          f"{len(m['shards'])} shards; embeddings: {emb}; {model}\nindexes: {idx}")
    return 0
