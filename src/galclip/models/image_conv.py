"""Convolutional image encoder: a small timm ResNet on g, r, z cutouts plus aperture photometry.

Stein et al. (2021) learnt Legacy Survey representations with a ResNet and MoCo v2; on a few
thousand cutouts a convolutional network is also the one that trains in CPU minutes without
collapsing (benchmarks/RESULTS.md). Inputs are physical cutouts in nanomaggies ``(B, bands, H, W)``:

1. **arcsinh stretch per band** with the same constants as :mod:`galclip.models.image_encoder`
   (colour-preserving: one fixed scale per band, no per-image normalization), then a centre crop
   to ``img_size``;
2. **aperture photometry from the pixels** (no catalogue column): the flux inside circular
   apertures of ``aperture_radii`` pixels around the centre, per band, as ``asinh(flux / 1 nmgy)``.
   Those numbers are what a catalogue's fluxes, colours and sizes know (total flux, colour,
   concentration); the arcsinh stretch and a ResNet's pooling blur them, so they enter the head
   directly, as the spectrum encoders' brightness statistics do.

The backbone is ``timm.models.resnet.ResNet`` (BasicBlock, ``layers`` blocks per stage of
``channels`` widths, after timm's 64-channel 7 x 7 stride-2 stem and max-pool).
``pooled (B, D)`` = LayerNorm(Linear([global average of the last feature map, aperture
features])); ``tokens (B, 1 + h w, D)`` = pooled, then one token per final feature-map cell
(with a learned position embedding) for the CLIP cross-attention head.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from galclip import conventions as C
from galclip.models.base import EncoderConfigMixin
from galclip.models.image_encoder import arcsinh_normalize, center_crop


@dataclass
class ConvImageEncoderConfig:
    """Every field is read by :class:`ConvImageEncoder`; the dict form rebuilds the model."""

    modality: str = "image"
    arch: str = "conv"
    bands: list[str] = field(default_factory=lambda: list(C.BANDS))
    img_size: int = 64              # centre crop (px); 64 px = 16.8 arcsec
    layers: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 192])
    embed_dim: int = 256
    aperture_radii: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0, 16.0, 32.0])  # px
    band_scale: list[float] = field(default_factory=lambda: list(C.BAND_SOFTENING_NMGY))  # nmgy
    arcsinh_divisor: float = 3.0

    def __post_init__(self) -> None:
        if self.modality != "image" or self.arch != "conv":
            raise ValueError("conv image encoder config: need modality 'image' and arch 'conv'")
        if len(self.band_scale) != len(self.bands):
            raise ValueError(f"conv image encoder config: band_scale has {len(self.band_scale)} "
                             f"entries but bands has {len(self.bands)}")
        if len(self.layers) != len(self.channels) or min(self.layers) < 1:
            raise ValueError("conv image encoder config: layers and channels need one entry per "
                             "stage, each >= 1")
        if min(self.band_scale) <= 0 or self.arcsinh_divisor <= 0 or self.img_size < 16:
            raise ValueError("conv image encoder config: band_scale, arcsinh_divisor > 0 and "
                             "img_size >= 16 required")


def aperture_fluxes(images: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Flux inside centred circular apertures: ``(B, bands, H, W)`` -> ``(B, bands, len(radii))``.

    A pixel counts when its centre lies within the radius of the image centre (hard edges: the
    apertures are features, not photometry to publish)."""
    H, W = images.shape[-2:]
    y = torch.arange(H, device=images.device, dtype=torch.float32) - (H - 1) / 2
    x = torch.arange(W, device=images.device, dtype=torch.float32) - (W - 1) / 2
    r = torch.sqrt(y[:, None] ** 2 + x[None] ** 2)                          # (H, W)
    masks = (r[None] <= radii.to(images.device)[:, None, None]).to(images.dtype)  # (n, H, W)
    return torch.einsum("bchw,nhw->bcn", images, masks)


class ConvImageEncoder(EncoderConfigMixin, nn.Module):
    """Nanomaggy cutouts ``(B, bands, H, W)`` -> ``pooled``, ``tokens``."""

    modality = "image"

    def __init__(self, config: ConvImageEncoderConfig | None = None, **kwargs: Any):
        super().__init__()
        from timm.models.resnet import BasicBlock, ResNet

        cfg = config or ConvImageEncoderConfig(**kwargs)
        self.cfg = cfg
        self.backbone = ResNet(BasicBlock, layers=tuple(cfg.layers), channels=tuple(cfg.channels),
                               in_chans=len(cfg.bands), num_classes=0, global_pool="",
                               zero_init_last=False)
        n_ap = len(cfg.aperture_radii) * len(cfg.bands)
        self.head = nn.Linear(cfg.channels[-1] + n_ap, cfg.embed_dim)
        self.head_norm = nn.LayerNorm(cfg.embed_dim)
        self.token_proj = nn.Linear(cfg.channels[-1], cfg.embed_dim)
        side = -(-cfg.img_size // 32)  # the ResNet's output stride is 32
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, cfg.embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.register_buffer("band_scale", torch.tensor(cfg.band_scale, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("radii", torch.tensor(cfg.aperture_radii, dtype=torch.float32),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != len(self.cfg.bands):
            raise ValueError(f"image encoder expects (B, {len(self.cfg.bands)}, H, W) nanomaggy "
                             f"cutouts in band order {self.cfg.bands}, got {tuple(images.shape)}")
        images = center_crop(images.float(), self.cfg.img_size)
        phot = torch.asinh(aperture_fluxes(images, self.radii)).flatten(1)   # (B, bands * n_ap)
        x = arcsinh_normalize(images, self.band_scale, self.cfg.arcsinh_divisor)
        # channels-last: oneDNN's convolutions and pooling run ~25 % faster per training step
        # on the CPU in this layout (same values to float precision); a no-op for the math
        x = x.contiguous(memory_format=torch.channels_last)
        fmap = self.backbone.forward_features(x)                             # (B, C, h, w)
        pooled = self.head_norm(self.head(torch.cat([fmap.mean((-2, -1)), phot], dim=1)))
        local = self.token_proj(fmap.flatten(2).transpose(1, 2))             # (B, h w, D)
        if local.shape[1] == self.pos_embed.shape[1]:
            local = local + self.pos_embed
        return {"pooled": pooled, "tokens": torch.cat([pooled[:, None], local], dim=1)}
