"""Data for self-supervised pretraining: one modality's columns of one split, as a DataLoader.

Rows come from :func:`galclip.data.open_dataset`; the split (``train`` by default) comes from
:func:`galclip.data.splits.split_indices`, so pretraining never sees the galaxies that alignment
and evaluation hold out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = {"image": ["image"], "spectrum": ["spectrum_flux", "spectrum_ivar"]}


def split_rows(dataset, split: str, max_rows: int | None = None) -> np.ndarray:
    """Row indices of ``split`` (a stored ``split`` column wins), at most ``max_rows`` of them."""
    from galclip.data.splits import split_indices

    cols = ["object_id"] + (["split"] if "split" in dataset.manifest["columns"] else [])
    table = dataset.read_columns(cols)
    rows = split_indices(table["object_id"], split, stored=table.get("split"))
    if len(rows) == 0:
        raise ValueError(f"{dataset.path}: split '{split}' has no rows")
    return rows[:max_rows] if max_rows else rows


def make_loader(data_dir: str | Path, modality: str, data: dict, seed: int, shuffle: bool = True):
    """DataLoader of ``{column: tensor}`` batches of ``modality`` over ``data["split"]``."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from galclip.data import open_dataset

    ds = open_dataset(data_dir, columns=COLUMNS[modality])
    rows = split_rows(ds, data["split"], data["max_rows"])
    g = torch.Generator().manual_seed(seed)
    return DataLoader(Subset(ds, rows.tolist()), batch_size=data["batch_size"], shuffle=shuffle,
                      num_workers=data["num_workers"], drop_last=shuffle and len(rows) > data["batch_size"],
                      generator=g, persistent_workers=data["num_workers"] > 0)
