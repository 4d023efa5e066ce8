"""Exact resume: what makes a killed training run, resumed from its checkpoint, end with the very
model of the run that was never interrupted (bit for bit on the CPU).

A step of training depends on the weights, the optimizer and scheduler state, the loop counters
(Lightning's checkpoint holds all four), the batch it reads and the random numbers it draws.
This module makes the last two a pure function of what the checkpoint records:

- **batches** -- :class:`ResumableLoader` is a DataLoader over an :class:`EpochSampler` (the
  order of an epoch is a function of ``(seed, epoch)``; :mod:`galclip.train.data`) that counts
  the batches it has handed out and is *stateful* in Lightning's sense (``state_dict`` /
  ``load_state_dict``, stored in the checkpoint's loop state): resumed mid-epoch it skips the
  batches already trained on, so the rest of the epoch sees the same batches in the same order.
- **random numbers** -- :class:`StepSeeds` seeds every generator a step may draw from (torch on
  the CPU and every GPU, NumPy's and Python's global ones) from ``(seed, global step, rank)``
  before each step. Augmentations, masks, dropout and crops then draw the same numbers whether
  the run was interrupted or not, without each of them carrying a generator of its own.

:class:`SaveLast` writes ``last.ckpt`` every ``every`` steps and at each epoch end, through
:class:`AtomicCheckpointIO` (a temporary file, then a rename: a kill while writing leaves the
previous checkpoint whole). Objectives keep any other state a step depends on (DINO's centres as
buffers) in their checkpoint; the alignment feature cache
is result-neutral by construction (:mod:`galclip.train.feature_cache`) and needs none.

Exactness holds on the CPU, in one process or several under DDP (gloo). On GPUs the order of
floating-point reductions (cuDNN/cuBLAS kernels, NCCL's all-reduce) is not fixed, so a resumed
run agrees with the uninterrupted one to the tolerance of two uninterrupted runs, not bit for bit
(docs/align.md, "Exact resume")."""
from __future__ import annotations

import errno
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A 63-bit seed that depends on ``(seed, step, rank)`` only (NumPy's SeedSequence mixing)."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def seed_all(seed: int) -> None:
    """Seed torch (CPU and all GPUs), NumPy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class StepSeeds(L.Callback):
    """Before each training step, seed every global generator from ``(seed, step, rank)``."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        seed_all(step_seed(self.seed, trainer.global_step, trainer.global_rank))


class ObjectiveModes(L.Callback):
    """Put the module in training mode through its own ``train()`` when training starts.

    Lightning 2.x never calls ``module.train()`` at fit start (modules start in the mode they
    were built in, and validation restores each submodule's mode as it found it), so an
    objective's override that keeps parts in eval mode -- frozen backbones of alignment, the
    DINO teacher -- would not apply: a frozen backbone's batch-norm statistics would follow the
    batches, and its outputs depend on the batch they were computed in."""

    def on_train_start(self, trainer, module) -> None:
        module.train()


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`~galclip.train.data.EpochSampler` that can resume mid-epoch.

    Its state is ``{"epoch", "batches"}``: the epoch being read and how many of its batches were
    handed out. Lightning takes no batch ahead from a loader whose length it knows, so when a
    checkpoint is written after step ``k`` of an epoch exactly ``k`` batches have been handed out.
    """

    def __init__(self, dataset, sampler, batch_size: int, **kwargs: Any):
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._epoch, self._batches = 0, 0

    def __iter__(self) -> Iterator[Any]:
        return self._counted()

    def _counted(self) -> Iterator[Any]:
        # runs at the first next(): after Lightning's set_epoch for this epoch
        self._epoch = self.sampler.epoch
        self._batches = self.sampler.start // self.batch_size
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self._epoch), "batches": int(self._batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where the saved state stopped: epoch ``epoch`` after its first ``batches``
        batches (none left when it was read to the end; the next epoch starts afresh)."""
        self.sampler.set_epoch(int(state["epoch"]), start=int(state["batches"]) * self.batch_size)


class LoaderPosition(L.Callback):
    """Keep the training loader's position (:class:`ResumableLoader`) in the checkpoint and put it
    back before the first batch of a resumed run.

    Lightning restores stateful loaders itself only when it sets the data up after reading the
    checkpoint; an objective that asks for ``trainer.estimated_stepping_batches`` (alignment's
    schedule does) sets it up before, and the saved position would be silently dropped."""

    KEY = "galclip_train_loader"

    def __init__(self) -> None:
        self.saved: dict[str, int] | None = None

    def on_save_checkpoint(self, trainer, module, checkpoint: dict[str, Any]) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            checkpoint[self.KEY] = loader.state_dict()

    def on_load_checkpoint(self, trainer, module, checkpoint: dict[str, Any]) -> None:
        self.saved = checkpoint.get(self.KEY)

    def on_train_start(self, trainer, module) -> None:
        loader = trainer.train_dataloader
        if self.saved is not None and isinstance(loader, ResumableLoader):
            loader.load_state_dict(self.saved)
        self.saved = None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a temporary file and renamed into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        from galclip.storage import atomic_write

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = tensor_bytes(checkpoint)
        with atomic_write(path, size=size) as tmp:
            try:
                torch.save(checkpoint, tmp)
            except RuntimeError as e:  # torch's writer drops the errno of a failed write
                if shutil.disk_usage(tmp.parent).free >= size:
                    raise
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e


def tensor_bytes(obj: Any) -> int:
    """The bytes of every tensor in a nested checkpoint: about the size of its file."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    return sum(tensor_bytes(v) for v in values)


class SaveLast(Checkpoint):
    """Write ``path`` (the run's ``last.ckpt``) every ``every`` training steps and at the end of
    each training epoch that validated: the two kinds of checkpoint Lightning restarts exactly
    (mid-epoch, or at the next epoch)."""

    def __init__(self, path: Path, every: int):
        self.path, self.every, self.due = Path(path), int(every), False

    def _save(self, trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        trainer.save_checkpoint(self.path)
        self.due = False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.due |= self.every > 0 and trainer.global_step % self.every == 0
        # not after an epoch's last batch: Lightning resumes such a checkpoint of a stage that
        # does not validate as the middle of the epoch it ended, with one batch too many; the
        # save moves to the next step (or the epoch-end save after a validation does it)
        if self.due and batch_idx + 1 < trainer.num_training_batches:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, module) -> None:
        # only after a validation: Lightning resumes an epoch-end checkpoint of a stage that does
        # not validate (pretraining) with one batch too many; those rely on the step saves
        if any(trainer.num_val_batches):
            self._save(trainer)
