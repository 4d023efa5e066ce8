"""Image encoder: a timm vision transformer on Legacy Survey g, r, z cutouts (AstroDINO-style).

The model takes physical cutouts in nanomaggies, ``(B, 3, H, W)``, and does the
physical-to-network mapping itself, so every caller (pretraining, CLIP, search) feeds the same
units:

1. **arcsinh stretch per band** (Lupton et al. 1999, "asinh magnitudes"):
   ``y_b = asinh(x_b / s_b) / d``. ``s_b`` (``band_scale``) is the flux where the stretch turns
   from linear to logarithmic; the defaults (0.0066, 0.01, 0.025) nanomaggies for g, r, z are the
   band scales of the Legacy Survey colour images (legacypipe ``get_rgb``) and sit near the
   per-pixel sky noise of DR9/DR10 in each band. Noise-level pixels thus stay linear
   (``|y| ~ 1/d``), while bright cores (10^3 s_b) are compressed to ``y ~ 7.6/d`` instead of
   dominating. ``d`` (``arcsinh_divisor``) brings typical values to order one. Unlike AstroCLIP,
   which hard-codes a conversion to an 8-bit RGB picture, the constants are part of the model
   config and stored in every checkpoint.
2. **centre crop** to ``img_size`` (144 px of the 152 px cutout, as AstroCLIP) when the input is
   larger; smaller inputs (60 px local crops in pretraining) pass through, the position
   embeddings being resampled by timm (``dynamic_img_size``).

The backbone is ``timm.models.vision_transformer.VisionTransformer`` with patch size 12
(a 12 x 12 token grid plus one class token at 144 px). Output: ``tokens (B, 1 + N, D)`` after the
final LayerNorm and ``pooled (B, D)`` = the class token, as DINOv2 trains it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from galclip import conventions as C
from galclip.models.base import EncoderConfigMixin


@dataclass
class ImageEncoderConfig:
    """Every field is read by :class:`ImageEncoder`; the dict form rebuilds the model."""

    modality: str = "image"
    bands: list[str] = field(default_factory=lambda: list(C.BANDS))  # input channel order
    img_size: int = 144            # centre crop (px) of the 152 px cutout
    patch_size: int = 12           # 144 / 12 = 12 x 12 patch tokens
    embed_dim: int = 192           # D
    depth: int = 12                # transformer blocks
    num_heads: int = 3
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0    # stochastic depth (training only)
    band_scale: list[float] = field(default_factory=lambda: list(C.BAND_SOFTENING_NMGY))  # nmgy
    arcsinh_divisor: float = 3.0   # y = asinh(x / band_scale) / arcsinh_divisor

    def __post_init__(self) -> None:
        if self.modality != "image":
            raise ValueError(f"image encoder config: modality must be 'image', got {self.modality!r}")
        if len(self.band_scale) != len(self.bands):
            raise ValueError(f"image encoder config: band_scale has {len(self.band_scale)} entries "
                             f"but bands has {len(self.bands)} ({self.bands})")
        if min(self.band_scale) <= 0 or self.arcsinh_divisor <= 0:
            raise ValueError("image encoder config: band_scale and arcsinh_divisor must be > 0")
        if self.img_size % self.patch_size:
            raise ValueError(f"image encoder config: img_size {self.img_size} is not a multiple "
                             f"of patch_size {self.patch_size}")


def arcsinh_normalize(images: torch.Tensor, band_scale: torch.Tensor, divisor: float) -> torch.Tensor:
    """``asinh(x / s_b) / d`` per band; images ``(B, bands, H, W)`` in nanomaggies."""
    return torch.asinh(images / band_scale.view(1, -1, 1, 1)) / divisor


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size`` x ``size`` window of ``(B, C, H, W)``; smaller inputs are returned as is."""
    h, w = images.shape[-2:]
    if h <= size and w <= size:
        return images
    top, left = max(h - size, 0) // 2, max(w - size, 0) // 2
    return images[..., top:top + min(size, h), left:left + min(size, w)]


class ImageEncoder(EncoderConfigMixin, nn.Module):
    """Nanomaggy cutouts ``(B, bands, H, W)`` -> ``{"tokens": (B, 1+N, D), "pooled": (B, D)}``."""

    modality = "image"

    def __init__(self, config: ImageEncoderConfig | None = None, **kwargs: Any):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        cfg = config or ImageEncoderConfig(**kwargs)
        self.cfg = cfg
        self.backbone = VisionTransformer(
            img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=len(cfg.bands),
            num_classes=0, global_pool="token", embed_dim=cfg.embed_dim, depth=cfg.depth,
            num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, drop_path_rate=cfg.drop_path_rate,
            dynamic_img_size=True)
        self.register_buffer("band_scale", torch.tensor(cfg.band_scale, dtype=torch.float32),
                             persistent=False)

    @property
    def num_prefix_tokens(self) -> int:
        return self.backbone.num_prefix_tokens

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Physical cutouts -> network input: arcsinh stretch, then centre crop."""
        if images.ndim != 4 or images.shape[1] != len(self.cfg.bands):
            raise ValueError(f"image encoder expects (B, {len(self.cfg.bands)}, H, W) nanomaggy "
                             f"cutouts in band order {self.cfg.bands}, got {tuple(images.shape)}")
        x = arcsinh_normalize(images.float(), self.band_scale, self.cfg.arcsinh_divisor)
        return center_crop(x, self.cfg.img_size)

    def forward_normalized(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the backbone on already normalized input ``(B, bands, h, w)``."""
        tokens = self.backbone.forward_features(x)  # (B, 1 + N, D), final LayerNorm applied
        return {"tokens": tokens, "pooled": tokens[:, 0]}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_normalized(self.normalize(images))
