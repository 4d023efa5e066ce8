"""Masked-modelling pretraining of the spectrum encoder (a LightningModule).

See :mod:`galclip.train.masked_spectrum` for the objective. A linear head maps each output
slice token back to its ``slice_size`` standardized pixel values.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from galclip.train.masked_spectrum import masked_mse, span_mask
from galclip.train.pretrain_module import PretrainModule, build_model_encoder


class SpectrumPretrainModule(PretrainModule):
    DEFAULTS = {"model": {"name": "spectrum-nano"},
                "objective": {"mask": {"n_spans": 6, "span_len": 50}, "loss": {"ivar_weighting": False}}}

    def __init__(self, cfg: dict[str, Any]):
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
            m = self.obj["mask"]
            mask = span_mask(B, N, m["n_spans"], m["span_len"], device=x.device)
        slices = torch.where(mask[..., None], self.mask_token.to(x.dtype), x[:, 1:])
        out = self.encoder.forward_embeddings(torch.cat([x[:, :1], slices], 1), e["padding_mask"])
        pred = self.head(out["tokens"][:, 1:])                        # (B, N, S)
        select = e["valid"] & mask[..., None]
        weight = e["ivar"] if self.obj["loss"]["ivar_weighting"] else None
        loss = masked_mse(pred.float(), e["values"], select, weight)
        return {"loss": loss, "masked_fraction": select.float().mean()}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch["spectrum_flux"], batch["spectrum_ivar"])
        self.log_losses(losses, batch_size=batch["spectrum_flux"].shape[0])
        return losses["loss"]
