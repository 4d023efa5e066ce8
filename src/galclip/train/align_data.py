"""Data for alignment: paired image/spectrum rows, held-out splits and a shuffle that reads
Parquet row groups in bulk.

Shuffling single rows of a Parquet dataset decodes a whole row group (32 galaxies) per row.
:class:`BlockShuffleSampler` shuffles the order of row groups, takes a window of
``window`` row groups at a time (the dataset's row-group cache holds them) and shuffles the rows
inside the window, so each row group is decoded once per epoch while batches still mix galaxies
from many parts of the survey (the "shuffle buffer" of streaming loaders).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galclip.modalities import input_columns, presence_columns, rows_with

PAIR_COLUMNS = input_columns()


def row_group_of_rows(dataset) -> np.ndarray:
    """Global row-group number of every dataset row, shape (N,)."""
    import pyarrow.parquet as pq

    groups, first = [], 0
    for path in dataset._shard_files:
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_row_groups):
            groups.append(np.full(meta.row_group(i).num_rows, first + i, dtype=np.int64))
        first += meta.num_row_groups
    return np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)


def split_rows(dataset, split: str) -> np.ndarray:
    """Row indices of ``split`` (galclip.data.splits: id hash, or a stored ``split`` column)
    that hold both an image and a spectrum (``has_image``/``has_spectrum`` when present)."""
    from galclip.data.splits import split_indices

    present = dataset.manifest["columns"]
    cols = ["object_id"] + [c for c in ("split", *presence_columns()) if c in present]
    data = dataset.read_columns(cols)
    rows = split_indices(data["object_id"], split, stored=data.get("split"))
    return rows[rows_with(data)[rows]]


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BlockShuffleSampler:
    """Indices of ``rows``, shuffled by windows of ``window`` row groups (in order if not
    ``shuffle``). Under DDP each rank takes every world-th index of the same order, the list
    wrapped around to equal length on every rank (ranks must run the same number of steps)."""

    def __init__(self, rows: np.ndarray, row_groups: np.ndarray, window: int = 8, seed: int = 0,
                 shuffle: bool = True):
        self.rows, self.groups = np.asarray(rows), np.asarray(row_groups)[rows]
        self.window, self.seed, self.shuffle, self.epoch = window, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.rows) // _rank_world()[1])

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(np.unique(self.groups))
        windows = [self.rows[np.isin(self.groups, order[i:i + self.window])]
                   for i in range(0, len(order), self.window)]
        return np.concatenate([rng.permutation(w) for w in windows])

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        rank, world = _rank_world()
        if world > 1:
            order = np.resize(order, len(self) * world)[rank::world]
        return iter(order.tolist())


def open_pairs(data_dir: str | Path):
    """The dataset with only the columns alignment reads (validated, checksums verified)."""
    from galclip.data import open_dataset

    return open_dataset(data_dir, columns=PAIR_COLUMNS)
