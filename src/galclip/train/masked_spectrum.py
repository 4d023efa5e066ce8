"""Masked spectrum modelling (AstroCLIP's SpecFormer pretraining, Parker et al. 2024, Sec. 3.2).

Contiguous spans of slice tokens are replaced by a learned mask token and the network
reconstructs the standardized flux of the hidden slices. Unlike AstroCLIP the loss counts only
masked pixels that are *valid* (ivar > 0), optionally weighted by their inverse variance.
"""
from __future__ import annotations

import torch


def span_mask(batch: int, n_tokens: int, n_spans: int, span_len: int,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``(batch, n_tokens)``: ``n_spans`` contiguous spans of ``span_len`` tokens per row,
    at uniform random starts (spans may overlap)."""
    span_len = min(span_len, n_tokens)
    starts = torch.randint(0, n_tokens - span_len + 1, (batch, n_spans, 1), device=device)
    pos = torch.arange(n_tokens, device=device).view(1, 1, -1)
    return ((pos >= starts) & (pos < starts + span_len)).any(1)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean (or ``weight``-weighted mean) squared error over the pixels where ``mask`` is True.

    ``pred``, ``target``, ``mask``, ``weight``: ``(B, N, S)``. Returns 0 (with gradient) when no
    pixel is selected, so a batch without valid masked pixels does not produce NaN.
    """
    w = mask.to(pred.dtype) if weight is None else mask.to(pred.dtype) * weight.to(pred.dtype)
    err = (pred - target) ** 2
    return (err * w).sum() / w.sum().clamp_min(1e-8)
