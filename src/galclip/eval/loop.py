"""The one small training loop of the supervised baselines and the few-shot probes.

Epochs of seeded, shuffled mini-batches with AdamW (Loshchilov & Hutter 2019), trained until the
validation loss stops improving (early stopping, Prechelt 1998) within a budget of epochs and
seconds; the weights of the best validation epoch are kept. Optionally the learning rate warms up
linearly over the first epochs (Goyal et al. 2017) and drops by a factor each time the validation
loss has been flat for a number of epochs (reduce-on-plateau), so that a stop means the lowered
rates no longer help either. ``precision`` ``auto`` runs the steps under bf16 autocast where the
hardware has bf16 (:mod:`galclip.precision`); the default is fp32. The loop knows nothing of the
model or the data: it is handed the network, a function giving the loss of a batch of training rows
and one giving the validation loss. Self-supervised and alignment training use the Lightning runner
(:mod:`galclip.train.runner`).
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a network trains, not when the module loads
    import torch
    from torch import nn


@dataclass
class LoopConfig:
    """How a supervised network trains: the optimizer, the schedule and the stopping rule."""

    epochs: int = 3               # the epoch budget
    batch_size: int = 64
    lr: float = 1e-3              # AdamW
    weight_decay: float = 1e-4
    seed: int = 0                 # the order of the mini-batches
    patience: int = 0             # stop after this many epochs without improvement (0: never early)
    min_delta: float = 0.0        # an improvement lowers the best validation loss by more than this
    lr_patience: int = 0          # > 0: lr *= lr_factor after each lr_patience flat epochs
    lr_factor: float = 0.3
    warmup_epochs: int = 0        # linear warm-up of the learning rate over these epochs' steps
    max_seconds: float | None = None  # the time budget (checked after each epoch)
    precision: str = "32-true"    # or "auto"/"bf16-mixed": bf16 autocast (galclip.precision)


@dataclass
class LoopRecord:
    """What a run of the loop did: validation loss per epoch, when and why it stopped."""

    history: list[float] = field(default_factory=list)  # validation loss after each epoch
    epochs_run: int = 0
    best_epoch: int | None = None  # 1-based; None without validation rows
    lr_scale: float = 1.0          # the learning rate's factor at the end (lr_factor ** lr_drops)
    lr_drops: int = 0
    stopped: str = "max epochs"
    seconds: float = 0.0


def _warmup(step: int, steps: int) -> float:
    return min(1.0, (step + 1) / steps) if steps else 1.0


def _epochs(n: int, progress: str | None):
    if progress is None:
        return range(n)
    from tqdm.auto import tqdm

    return tqdm(range(n), desc=progress, leave=False)


class _Plateau:
    """The stopping rule: tracks the best validation loss and the flat epochs since."""

    def __init__(self, cfg: LoopConfig, record: LoopRecord):
        self.cfg, self.record = cfg, record
        self.best, self.best_state, self.since = math.inf, None, 0

    def update(self, val: float, epoch: int, net: nn.Module) -> None:
        self.record.history.append(val)
        if val < self.best - self.cfg.min_delta:
            self.best, self.since = val, 0
            self.best_state = copy.deepcopy(net.state_dict())
            self.record.best_epoch = epoch + 1
            return
        self.since += 1
        if self.cfg.lr_patience and self.since % self.cfg.lr_patience == 0:
            self.record.lr_scale *= self.cfg.lr_factor
            self.record.lr_drops += 1

    def stop(self, seconds: float) -> str | None:
        cfg = self.cfg
        if cfg.patience and self.since >= cfg.patience:
            return f"validation loss flat for {cfg.patience} epochs"
        if cfg.max_seconds and seconds > cfg.max_seconds:
            return f"time budget {cfg.max_seconds:.0f} s"
        return None


def fit_to_plateau(net: nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor],
                   val_loss: Callable[[], float] | None, rows: torch.Tensor, cfg: LoopConfig, *,
                   progress: str | None = None,
                   clock: Callable[[], float] = time.perf_counter) -> LoopRecord:
    """Train ``net`` on the training ``rows`` (a 1-D tensor of row indices, shuffled each epoch
    and handed to ``batch_loss`` ``batch_size`` at a time) until ``val_loss()`` (None: no
    validation rows, run the whole budget) stops improving; load the best epoch's weights.
    ``progress``: a label for a progress bar over the epochs; ``clock``: seconds, for the budget."""
    import torch

    from galclip.precision import autocast, resolve

    record = LoopRecord()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = cfg.warmup_epochs * max(1, math.ceil(len(rows) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _warmup(s, warm) * record.lr_scale)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = next(net.parameters()).device
    precision = resolve(cfg.precision, device)  # the hardware probe once, not per batch
    rule, start = _Plateau(cfg, record), clock()
    for epoch in _epochs(cfg.epochs, progress):
        net.train()
        for b in torch.randperm(len(rows), generator=gen).split(cfg.batch_size):
            opt.zero_grad()
            with autocast(precision, device):
                loss = batch_loss(rows[b])
            loss.float().backward()
            opt.step()
            sched.step()
        record.epochs_run = epoch + 1
        if val_loss is not None:  # in fp32, as the predictions of the kept weights
            rule.update(val_loss(), epoch, net)
        if (why := rule.stop(clock() - start)) is not None:
            record.stopped = why
            break
    record.seconds = clock() - start
    if rule.best_state is not None:
        net.load_state_dict(rule.best_state)
    return record
