"""Embed every galaxy of a dataset with a CLIP checkpoint into an embedding catalog.

Streams the dataset through the model's inference function (eval mode, no grad, bf16 on GPU),
never drops a row, and writes Parquet shards + manifest.json to CATALOG_DIR, recording the
checkpoint's sha256. Killed and rerun, it skips finished shards. Under torchrun each rank embeds
its share of the shards on its own GPU (cuda:LOCAL_RANK) and rank 0 writes the manifest.

Examples:
  galclip embed --model runs/demo/align/model.safetensors --data runs/demo/data --out runs/demo/catalog-2
  torchrun --nproc_per_node 8 -m galclip.cli embed --model M --data D --out C --workers 6
"""
from __future__ import annotations

import argparse
import os

from galclip.argtypes import csv_choices, device, new_dir, positive_int
from galclip.modalities import BATCH_SIZE, NAMES
from galclip.search.catalog import ROWS_PER_SHARD


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="CLIP checkpoint (galclip.load_model)")
    p.add_argument("--data", required=True, help="dataset folder (holds manifest.json)")
    p.add_argument("--out", required=True, type=new_dir, help="catalog folder to write (resumed if present)")
    p.add_argument("--columns", default=None,
                   help="comma-separated metadata columns to copy (default: every scalar column)")
    p.add_argument("--modalities", type=csv_choices(NAMES), default=",".join(NAMES),
                   help="which embeddings to compute (%(default)s, or one of them)")
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE,
                   help="rows per model batch (default %(default)s)")
    p.add_argument("--device", type=device, default=None,
                   help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--rows-per-shard", type=positive_int, default=ROWS_PER_SHARD,
                   help="rows per catalog shard (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing catalog in --out")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes per rank decoding Parquet ahead of the model")


def default_device() -> str:
    """This rank's GPU (``cuda:LOCAL_RANK`` under torchrun) if there is one, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    local = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local)
    return f"cuda:{local}"


def run(args: argparse.Namespace) -> int:
    import galclip
    from galclip.search.catalog import build_catalog

    model = galclip.load_model(args.model)
    device = args.device or default_device()
    columns = [c for c in args.columns.split(",") if c] if args.columns is not None else None
    m = build_catalog(model, args.data, args.out, model_path=args.model, columns=columns,
                      modalities=args.modalities,
                      batch_size=args.batch_size, device=device,
                      rows_per_shard=args.rows_per_shard, overwrite=args.overwrite,
                      num_workers=args.workers)
    if int(os.environ.get("RANK", 0)) != 0:
        return 0
    print(f"{args.out}: catalog of {m['n_rows']} objects, modalities {', '.join(m['modalities'])}, "
          f"{len(m['shards'])} shards")
    return 0
