"""CPU seconds of one epoch of the alignment's data loading, default collate vs ``collate_rows``.

Usage:  python benchmarks/explore/collate_cost.py --data runs/demo/data [--epochs 2] [--batch-size 64]

Reads the train split of a galclip dataset in the alignment's order (``BlockShuffleSampler``,
num_workers 0, as the CPU preset) with torch's ``default_collate`` and with
``galclip.train.data.collate_rows``, alternating, and prints the CPU and wall seconds of each
epoch and whether the two gave the same batches. The first epoch of each also decodes the
Parquet row groups (the dataset's cache then holds them), so compare like epochs.
"""
from __future__ import annotations

import argparse
import time


def epoch(loader) -> tuple[float, float, list]:
    c, w, batches = time.process_time(), time.perf_counter(), []
    for b in loader:
        batches.append(b)
    return time.process_time() - c, time.perf_counter() - w, batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    import torch
    from torch.utils.data import DataLoader, default_collate

    from galclip.train.data import (
        BlockShuffleSampler,
        collate_rows,
        open_pairs,
        row_group_of_rows,
        split_rows,
    )

    ds = open_pairs(args.data)
    rows = split_rows(ds, "train", ("image", "spectrum"))
    sampler = BlockShuffleSampler(rows, row_group_of_rows(ds), 8, 0)
    print(f"{len(rows)} rows, torch threads {torch.get_num_threads()}")
    for e in range(args.epochs):
        out = {}
        for name, fn in (("default_collate", default_collate), ("collate_rows", collate_rows)):
            cpu, wall, out[name] = epoch(DataLoader(ds, args.batch_size, sampler=sampler, collate_fn=fn))
            print(f"epoch {e} {name:16s} CPU {cpu:6.2f} s  wall {wall:6.2f} s")
        same = all(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype
                                                for k in a)
                   for a, b in zip(out["default_collate"], out["collate_rows"], strict=True))
        print(f"epoch {e}: identical batches: {same}")


if __name__ == "__main__":
    main()
