"""SimCLR pretraining of the image encoder with physical augmentations (the CPU recipe).

Stein et al. (2021) learnt Legacy Survey representations by contrasting two views of each
cutout that differ only as the sky could make them differ (:func:`galclip.augment.augment_view`:
symmetries of the square, a jitter of up to ``max_shift`` px, extra PSF blur, extra noise; no
colour jitter: colours are physics). They used MoCo v2 with a queue of negatives to reach large
effective batches; on a few thousand cutouts the in-batch negatives of SimCLR (Chen et al. 2020)
are enough and need no momentum encoder. Loss: lightly's ``NTXentLoss`` (gathered across
devices) on a two-layer projection head; the encoder below the head is what pretraining exports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from galclip.augment import ImageViews, augment_view
from galclip.train.pretrain_module import PretrainModule, build_model_encoder

if TYPE_CHECKING:
    from galclip.train.schema import TrainConfig


@dataclass
class ProjectionHeadConfig:
    """The SimCLR projection head (Chen et al. 2020): an MLP the loss sees, dropped afterwards."""

    hidden_dim: int = 512
    output_dim: int = 128


@dataclass
class NTXent:
    temperature: float = 0.2


@dataclass
class SimCLRObjective:
    """``objective`` of ``simclr``: the views, the projection head and the NT-Xent temperature."""

    name: str = "simclr"
    # Stein et al. (2021): symmetries, jitter of up to max_shift px, PSF blur, extra noise
    augment: ImageViews = field(default_factory=lambda: ImageViews(max_shift=7))
    heads: ProjectionHeadConfig = field(default_factory=ProjectionHeadConfig)
    loss: NTXent = field(default_factory=NTXent)


class ImageSimCLRModule(PretrainModule):
    MODEL = "image-conv-nano"
    Objective = SimCLRObjective
    obj: SimCLRObjective

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.encoder = build_model_encoder(cfg)
        h = self.obj.heads
        self.projection = SimCLRProjectionHead(self.encoder.embed_dim, h.hidden_dim, h.output_dim)
        self.ntxent = NTXentLoss(temperature=self.obj.loss.temperature, gather_distributed=True)

    def trainable(self) -> list[nn.Module]:
        return [self.encoder, self.projection]

    def view(self, images: torch.Tensor) -> torch.Tensor:
        size = min(getattr(self.encoder.cfg, "img_size", images.shape[-1]), images.shape[-1])
        a = self.obj.augment
        x = augment_view(images.float(), size, a.max_shift, self.encoder.band_scale, a)
        return x

    def losses(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        B = images.shape[0]
        pooled = self.encoder(torch.cat([self.view(images), self.view(images)]))["pooled"]
        p = self.projection(pooled.float()).split(B)
        return {"loss": self.ntxent(p[0], p[1])}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = batch["image"]
        images = images[torch.isfinite(images).flatten(1).all(1)]       # rows without an image
        if images.shape[0] < 2:
            return None
        losses = self.losses(images)
        self.log_losses(losses, batch_size=images.shape[0])
        return losses["loss"]
