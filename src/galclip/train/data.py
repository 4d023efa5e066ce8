"""Data of every training stage: the rows of a split that hold the modalities a stage needs,
the pretraining loader of one modality, and the alignment sampler that reads Parquet row groups
in bulk.

Rows come from :func:`galclip.data.open_dataset`; splits from
:func:`galclip.data.splits.split_indices` (a stored ``split`` column wins), so pretraining never
sees the galaxies that alignment and evaluation hold out. A row may lack a modality (the optional
``has_image``/``has_spectrum`` columns of built datasets); a stage takes only the rows that hold
what it reads.

Shuffling single rows of a Parquet dataset decodes a whole row group (32 galaxies) per row.
:class:`BlockShuffleSampler` shuffles the order of row groups, takes a window of ``window`` row
groups at a time (the dataset's row-group cache holds them) and shuffles the rows inside the
window, so each row group is decoded once per epoch while batches still mix galaxies from many
parts of the survey (the "shuffle buffer" of streaming loaders).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from galclip.modalities import input_columns, presence_columns, rows_with

if TYPE_CHECKING:
    from galclip.train.schema import PretrainData

PAIR_COLUMNS = input_columns()


def split_rows(dataset, split: str, modalities: Sequence[str] = (), max_rows: int | None = None
               ) -> np.ndarray:
    """Row indices of ``split`` that hold every one of ``modalities``, at most ``max_rows``."""
    from galclip.data.splits import split_indices

    present = dataset.manifest["columns"]
    flags = [f for f in presence_columns(modalities) if f in present] if modalities else []
    table = dataset.read_columns(["object_id"] + [c for c in ("split", *flags) if c in present])
    rows = split_indices(table["object_id"], split, stored=table.get("split"))
    if modalities:
        rows = rows[rows_with(table, modalities)[rows]]
    return rows[:max_rows] if max_rows else rows


def collate_rows(rows: Sequence[dict]) -> dict:
    """The batch ``torch.utils.data.default_collate`` makes of dataset rows, the same tensors
    (dtype, shape, values), with each numeric array column stacked by ``np.stack`` in one
    thread: ``torch.stack`` copies with every intra-op thread, and on a 2-core machine shared
    with other jobs its threads spent ~0.17 CPU s per batch of 64 cutouts waiting for each other
    (2 ms in one thread; benchmarks/RESULTS.md). Other columns go through ``default_collate``."""
    import torch
    from torch.utils.data import default_collate

    out = {}
    for key, first in rows[0].items():
        column = [r[key] for r in rows]
        numeric = isinstance(first, np.ndarray) and first.dtype.kind in "biuf"
        out[key] = torch.from_numpy(np.stack(column)) if numeric else default_collate(column)
    return out


def make_loader(data_dir: str | Path, modality: str, data: PretrainData, seed: int, shuffle: bool = True):
    """Pretraining: a resumable DataLoader of ``{column: tensor}`` batches of ``modality`` over
    ``data.split``, shuffled anew each epoch as a function of ``(seed, epoch)``."""
    from galclip.data import open_dataset
    from galclip.train.resumable import ResumableLoader

    ds = open_dataset(data_dir, columns=input_columns((modality,), with_id=False))
    rows = split_rows(ds, data.split, (modality,), data.max_rows)
    if len(rows) == 0:
        raise ValueError(f"{ds.path}: split '{data.split}' has no rows with a {modality}")
    return ResumableLoader(ds, EpochSampler(rows, seed, shuffle), data.batch_size,
                           num_workers=data.num_workers, collate_fn=collate_rows,
                           drop_last=shuffle and len(rows) > data.batch_size,
                           persistent_workers=data.num_workers > 0)


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


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler:
    """Indices of ``rows`` in an order that is a pure function of ``(seed, epoch)`` (``_order``),
    from position ``start`` on: a run resumed mid-epoch skips what it already read
    (:class:`galclip.train.resumable.ResumableLoader`). Under DDP each rank takes every
    world-th index of the same order, the list wrapped around to equal length on every rank
    (ranks must run the same number of steps)."""

    def __init__(self, rows: np.ndarray, seed: int = 0, shuffle: bool = True):
        self.rows, self.seed, self.shuffle = np.asarray(rows), seed, shuffle
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Read epoch ``epoch`` from its ``start``-th index (of this rank's share)."""
        if epoch != self.epoch or start:
            self.start = start
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.rows) // _rank_world()[1])

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        return np.random.default_rng((self.seed, self.epoch)).permutation(self.rows)

    def __iter__(self) -> Iterator[int]:
        order = self._order()
        rank, world = _rank_world()
        if world > 1:
            order = np.resize(order, len(self) * world)[rank::world]
        start, self.start = self.start, 0  # a skip applies to one pass only
        return iter(order[start:].tolist())


class BlockShuffleSampler(EpochSampler):
    """Indices of ``rows``, shuffled by windows of ``window`` row groups (in order if not
    ``shuffle``); see :class:`EpochSampler` for epochs, resume and DDP."""

    def __init__(self, rows: np.ndarray, row_groups: np.ndarray, window: int = 8, seed: int = 0,
                 shuffle: bool = True):
        super().__init__(rows, seed, shuffle)
        self.groups, self.window = np.asarray(row_groups)[self.rows], window

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return self.rows
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(np.unique(self.groups))
        windows = [self.rows[np.isin(self.groups, order[i:i + self.window])]
                   for i in range(0, len(order), self.window)]
        return np.concatenate([rng.permutation(w) for w in windows])


def open_pairs(data_dir: str | Path):
    """The dataset with only the columns alignment reads (validated, checksums verified)."""
    from galclip.data import open_dataset

    return open_dataset(data_dir, columns=PAIR_COLUMNS)
