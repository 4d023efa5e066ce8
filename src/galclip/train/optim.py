"""Optimizer and schedules of every training stage (pretraining and alignment).

AdamW (Loshchilov & Hutter 2019) with one no-decay rule (:func:`no_decay`: biases, norms,
position embeddings, special tokens, attention-pooling queries, the CLIP temperature); the
learning rate warms up linearly, then follows a cosine (Goyal et al. 2017; Loshchilov & Hutter
2017), as in DINOv2, open_clip and AstroCLIP. A stage may scale the learning rate per parameter
(layer-wise decay when fine-tuning backbones, BEiT, Bao et al. 2022) with ``lr_scale``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from galclip.train.schema import OptimConfig

#: parameter-name endings that never get weight decay (besides every tensor with ndim <= 1)
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "reg_token", "query", "log_logit_scale")


def warmup_cosine(step: int, *, warmup: int, total: int, start: float = 1.0, end: float = 0.0) -> float:
    """Linear 0 -> ``start`` over ``warmup`` steps, then cosine ``start`` -> ``end`` at ``total``."""
    if step < warmup:
        return start * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t))


def cosine_ramp(step: int, *, total: int, start: float, end: float) -> float:
    """Cosine from ``start`` at step 0 to ``end`` at ``total`` (EMA momentum, weight decay)."""
    t = min(1.0, step / max(1, total))
    return end - 0.5 * (end - start) * (1 + math.cos(math.pi * t))


def no_decay(name: str, p: nn.Parameter) -> bool:
    """The one rule: vectors and scalars, embeddings and tokens are not decayed."""
    return p.ndim <= 1 or name.endswith(NO_DECAY_NAMES)


def param_groups(named: Iterable[tuple[str, nn.Parameter]], *, lr: float, weight_decay: float,
                 lr_scale: Callable[[str], float] | None = None) -> list[dict[str, Any]]:
    """AdamW groups by (learning rate, decayed); parameters without gradients are in none (the
    optimizer keeps no state for frozen weights) and a shared parameter is counted once.
    ``decayed`` marks the groups that a weight-decay schedule (:func:`set_weight_decay`) moves."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for name, p in named:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        group_lr = lr * lr_scale(name) if lr_scale else lr
        groups.setdefault((group_lr, not no_decay(name, p)), []).append(p)
    return [{"params": ps, "lr": group_lr, "weight_decay": weight_decay if decayed else 0.0,
             "decayed": decayed} for (group_lr, decayed), ps in groups.items()]


def named_parameters(modules: Iterable[nn.Module]) -> Iterable[tuple[str, nn.Parameter]]:
    for module in modules:
        yield from module.named_parameters()


def adamw(groups: list[dict[str, Any]], optim: OptimConfig, *, warmup: int, total: int,
          peak: float = 1.0, end: float = 0.0) -> dict[str, Any]:
    """AdamW over ``groups`` + a per-step LambdaLR: :func:`warmup_cosine` from ``peak`` to ``end``,
    divided by ``peak`` (each group's lr is the multiplier's base). Lightning's return format."""
    opt = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup=warmup, total=total, start=peak, end=end) / peak)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def set_weight_decay(optimizer: torch.optim.Optimizer, value: float) -> None:
    """Set the weight decay of the decayed group(s) (DINOv2's weight-decay schedule)."""
    for group in optimizer.param_groups:
        if group.get("decayed"):
            group["weight_decay"] = value
