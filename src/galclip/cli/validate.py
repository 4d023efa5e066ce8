"""Check a galclip dataset folder: manifest, every shard, sha256 checksums, column shapes, and
the values (unique object ids; finite arrays, non-negative ivars, labels finite or NaN and in
range).

Example:  galclip validate runs/demo/data
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="dataset folder (holds manifest.json)")
    p.add_argument("--no-checksums", action="store_true", help="skip the sha256 check (faster)")
    p.add_argument("--no-content", action="store_true",
                   help="skip the value checks (ids, NaN/inf, ranges); structure only")


def run(args: argparse.Namespace) -> int:
    from galclip.data.format import validate_dataset

    m = validate_dataset(args.path, verify_checksums=not args.no_checksums,
                         content=not args.no_content)
    cols = ", ".join(f"{k}{tuple(v['shape']) if v['shape'] else ''}" for k, v in m["columns"].items())
    checked = "structure" if args.no_content else "structure and content"
    print(f"{args.path}: valid {m['format']} v{m['version']} ({checked}), {m['n_rows']} rows in "
          f"{len(m['shards'])} shards\ncolumns: {cols}")
    return 0
