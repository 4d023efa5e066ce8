"""Cross-modal alignment (``galclip align``): train GalaxyCLIP with the CLIP objective.

The stage ``align`` of the one training runner (:mod:`galclip.train.runner`: config, run folder,
resume policy, Trainer, export); the objective, its trainable parameters and learning rates are
:mod:`galclip.train.clip`. Training reads the ``train`` split, validation the ``val``
split, both only rows that hold an image and a spectrum, shuffled by Parquet row groups
(:class:`galclip.train.data.BlockShuffleSampler`; a killed run resumes on the same batches,
:mod:`galclip.train.resumable`). The run folder ends with ``model.safetensors``,
the self-describing model (``galclip.load_model``), rewritten after every epoch.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from galclip.train.runner import Stage

if TYPE_CHECKING:
    from galclip.train.schema import TrainConfig

MODEL_FILE = "model.safetensors"


def loaders(cfg: TrainConfig, data_dir: str | Path):
    """(train, val) DataLoaders of paired rows; each rank reads its share (the sampler splits)."""
    from torch.utils.data import DataLoader

    from galclip.train.data import (
        BlockShuffleSampler,
        collate_rows,
        open_pairs,
        row_group_of_rows,
        split_rows,
    )
    from galclip.train.resumable import ResumableLoader

    d = cfg.data
    ds = open_pairs(data_dir)
    train_rows = split_rows(ds, "train", ("image", "spectrum"), d.max_rows)
    val_rows = split_rows(ds, "val", ("image", "spectrum"), int(d.max_val_rows))
    if len(train_rows) < 2 or len(val_rows) < 2:
        raise ValueError(f"{data_dir}: alignment needs at least 2 training and 2 validation "
                         f"galaxies; the splits hold {len(train_rows)} and {len(val_rows)}")
    bs, workers = int(d.batch_size), int(d.num_workers)
    groups = row_group_of_rows(ds)
    sampler = BlockShuffleSampler(train_rows, groups, int(d.shuffle_window), int(cfg.seed))
    train = ResumableLoader(ds, sampler, bs, num_workers=workers, drop_last=len(train_rows) > bs,
                            persistent_workers=workers > 0, collate_fn=collate_rows)
    val = DataLoader(ds, batch_size=int(d.val_batch_size), num_workers=workers,
                     sampler=BlockShuffleSampler(val_rows, groups, shuffle=False),
                     collate_fn=collate_rows)
    return train, val


def _export(module, path: Path, info: dict[str, Any]) -> None:
    from galclip.models.clip import save_model

    save_model(module.model, path, extra={k: v for k, v in info.items() if k != "stage"})


def _encoder_files(cfg: TrainConfig) -> list[str]:
    files = (getattr(cfg.model, f"{m}_checkpoint") for m in ("image", "spectrum"))
    return [f for f in files if f]


ALIGN = Stage("align", MODEL_FILE, loaders, _export, _encoder_files, distributed_sampler=False)

