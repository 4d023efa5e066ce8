"""Data for self-supervised pretraining: one modality's columns of one split, as a DataLoader.

Rows come from :func:`galclip.data.open_dataset`; the split (``train`` by default) comes from
:func:`galclip.data.splits.split_indices`, so pretraining never sees the galaxies that alignment
and evaluation hold out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from galclip.modalities import MODALITIES, input_columns


def split_rows(dataset, split: str, max_rows: int | None = None, modality: str | None = None
               ) -> np.ndarray:
    """Row indices of ``split`` (a stored ``split`` column wins) that have ``modality`` (per the
    optional ``has_image``/``has_spectrum`` column), at most ``max_rows`` of them."""
    from galclip.data.splits import split_indices

    present = dataset.manifest["columns"]
    flag = MODALITIES[modality].presence if modality else None
    cols = ["object_id"] + [c for c in ("split", flag) if c and c in present]
    table = dataset.read_columns(cols)
    rows = split_indices(table["object_id"], split, stored=table.get("split"))
    if flag in table:
        rows = rows[np.asarray(table[flag], dtype=bool)[rows]]
    if len(rows) == 0:
        raise ValueError(f"{dataset.path}: split '{split}' has no rows with a {modality or 'row'}")
    return rows[:max_rows] if max_rows else rows


def make_loader(data_dir: str | Path, modality: str, data: dict, seed: int, shuffle: bool = True):
    """DataLoader of ``{column: tensor}`` batches of ``modality`` over ``data["split"]``."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from galclip.data import open_dataset

    ds = open_dataset(data_dir, columns=input_columns([modality], with_id=False))
    rows = split_rows(ds, data["split"], data["max_rows"], modality)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(Subset(ds, rows.tolist()), batch_size=data["batch_size"], shuffle=shuffle,
                      num_workers=data["num_workers"], drop_last=shuffle and len(rows) > data["batch_size"],
                      generator=g, persistent_workers=data["num_workers"] > 0)
