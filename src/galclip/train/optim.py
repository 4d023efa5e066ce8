"""Optimizer and schedules shared by the pretraining stages.

AdamW (Loshchilov & Hutter 2019) with no weight decay on biases, norms, position embeddings and
special tokens; the learning rate warms up linearly, then follows a cosine to ``min_lr``
(Goyal et al. 2017; Loshchilov & Hutter 2017), as in DINOv2 and AstroCLIP.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def warmup_cosine(step: int, total: int, warmup: int, start: float, end: float) -> float:
    """Linear 0 -> ``start`` over ``warmup`` steps, then cosine ``start`` -> ``end`` at ``total``."""
    if step < warmup:
        return start * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t))


def cosine_ramp(step: int, total: int, start: float, end: float) -> float:
    """Cosine from ``start`` at step 0 to ``end`` at ``total`` (EMA momentum, weight decay)."""
    t = min(1.0, step / max(1, total))
    return end - 0.5 * (end - start) * (1 + math.cos(math.pi * t))


def _no_decay(name: str, p: nn.Parameter) -> bool:
    return p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "mask_token", "reg_token"))


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed weights and undecayed biases/norms/embeddings/tokens."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if _no_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "decayed": True},
            {"params": no_decay, "weight_decay": 0.0, "decayed": False}]


def configure_adamw(modules: Iterable[nn.Module], optim: dict, max_steps: int):
    """AdamW + per-step LambdaLR (warm-up + cosine to ``min_lr``) for a LightningModule."""
    groups = param_groups(modules, optim["weight_decay"])
    opt = torch.optim.AdamW(groups, lr=optim["lr"], betas=tuple(optim["betas"]))
    lr, min_lr, warm = optim["lr"], optim["min_lr"], optim["warmup_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, max_steps, warm, lr, min_lr) / lr)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def set_weight_decay(optimizer: torch.optim.Optimizer, value: float) -> None:
    """Set the weight decay of the decayed group(s) (DINOv2's weight-decay schedule)."""
    for group in optimizer.param_groups:
        if group.get("decayed"):
            group["weight_decay"] = value
