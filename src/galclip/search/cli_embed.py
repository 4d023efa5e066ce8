"""Embed every galaxy of a dataset with a CLIP checkpoint into an embedding catalog.

Streams the dataset through the model's inference function (eval mode, no grad, bf16 on GPU),
never drops a row, and writes Parquet shards + manifest.json to CATALOG_DIR, recording the
checkpoint's sha256. Killed and rerun, it skips finished shards.

Example:
  galclip embed --model runs/demo/align/model.safetensors --data runs/demo/data --out runs/demo/catalog-2
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="CLIP checkpoint (galclip.load_model)")
    p.add_argument("--data", required=True, help="dataset folder (holds manifest.json)")
    p.add_argument("--out", required=True, help="catalog folder to write (resumed if present)")
    p.add_argument("--columns", default=None,
                   help="comma-separated metadata columns to copy (default: every scalar column)")
    p.add_argument("--modalities", default="image,spectrum", help="which embeddings to compute")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--rows-per-shard", type=int, default=4096, help="rows per catalog shard")
    p.add_argument("--overwrite", action="store_true", help="discard an existing catalog in --out")


def run(args: argparse.Namespace) -> int:
    import torch

    import galclip
    from galclip.search.catalog import build_catalog

    model = galclip.load_model(args.model)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    columns = [c for c in args.columns.split(",") if c] if args.columns is not None else None
    m = build_catalog(model, args.data, args.out, model_path=args.model, columns=columns,
                      modalities=[s for s in args.modalities.split(",") if s],
                      batch_size=args.batch_size, device=device,
                      rows_per_shard=args.rows_per_shard, overwrite=args.overwrite)
    print(f"{args.out}: catalog of {m['n_rows']} objects, modalities {', '.join(m['modalities'])}, "
          f"{len(m['shards'])} shards")
    return 0
