"""Masked spectrum modelling (AstroCLIP's SpecFormer pretraining, Parker et al. 2024, Sec. 3.2).

Contiguous spans of slice tokens are replaced by a learned mask token and the network
reconstructs the standardized flux of the hidden slices; a linear head maps each output slice
token back to its ``slice_size`` standardized pixel values. Unlike AstroCLIP the loss counts
only masked pixels that are *valid* (ivar > 0), optionally weighted by their inverse variance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from galclip.train.pretrain_module import PretrainModule, build_model_encoder

if TYPE_CHECKING:
    from galclip.train.schema import TrainConfig


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


@dataclass
class SpanMasking:
    n_spans: int = 6                 # spans of hidden slices per spectrum
    span_len: int = 50               # slices per span


@dataclass
class MaskedLoss:
    ivar_weighting: bool = False     # weight each pixel's squared error by its ivar


@dataclass
class MaskedObjective:
    """``objective`` of ``masked``: which slices are hidden and how their reconstruction counts."""

    name: str = "masked"
    mask: SpanMasking = field(default_factory=SpanMasking)
    loss: MaskedLoss = field(default_factory=MaskedLoss)


class SpectrumPretrainModule(PretrainModule):
    MODEL = "spectrum-nano"
    Objective = MaskedObjective
    obj: MaskedObjective

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.encoder = build_model_encoder(cfg)
        D, S = self.encoder.embed_dim, self.encoder.cfg.slice_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Linear(D, S)

    def trainable(self) -> list[nn.Module]:
        return [self]

    def losses(self, flux: torch.Tensor, ivar: torch.Tensor,
               mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruction loss for one batch; ``mask (B, N)`` True = hidden slice (drawn if None)."""
        e = self.encoder.embed(flux, ivar)
        x = e["x"]                                                     # (B, 1+N, D)
        B, N = e["values"].shape[:2]
        if mask is None:
            m = self.obj.mask
            mask = span_mask(B, N, m.n_spans, m.span_len, device=x.device)
        slices = torch.where(mask[..., None], self.mask_token.to(x.dtype), x[:, 1:])
        out = self.encoder.forward_embeddings(torch.cat([x[:, :1], slices], 1), e["padding_mask"])
        pred = self.head(out["tokens"][:, 1:])                        # (B, N, S)
        select = e["valid"] & mask[..., None]
        weight = e["ivar"] if self.obj.loss.ivar_weighting else None
        loss = masked_mse(pred.float(), e["values"], select, weight)
        return {"loss": loss, "masked_fraction": select.float().mean()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch["spectrum_flux"], batch["spectrum_ivar"])
        self.log_losses(losses, batch_size=batch["spectrum_flux"].shape[0])
        return losses["loss"]
