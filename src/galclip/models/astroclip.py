"""The published AstroCLIP model (Parker et al. 2024) as a galclip model family.

Three parts, each with the official forward and the official state-dict names, so the released
weights load without renaming (``galclip.models.astroclip_checkpoint`` reads the files):

* :class:`AstroDinoEncoder`, the AstroDINO image backbone: a DINOv2 ViT (Oquab et al. 2023;
  ViT-L/12 on 144 px, layerscale, LayerNorm eps 1e-6) whose blocks sit in ``block_chunks``
  chunks (keys ``blocks.{c}.{i}``, DINOv2's FSDP layout). As AstroCLIP's ``ImageHead`` it runs
  ``patch_embed`` -> blocks -> ``norm`` only: the stored class token and position embedding are
  not used. Input preprocessing is AstroCLIP's ``AstroClipCollator``: the Legacy Survey viewer's
  RGB stretch (:func:`legacy_rgb`, Lupton et al. 2004 asinh with ``Q`` = 20) and a centre crop
  152 -> 144 px.
* :class:`SpecFormerEncoder`, the SpecFormer spectrum backbone with its own standardization and
  slicing (:func:`specformer_tokens`).
* :class:`AstroCLIP`, both backbones each followed by AstroCLIP's ``CrossAttentionHead`` (one
  learned query; ``nn.MultiheadAttention`` with ``kdim = vdim`` = the backbone width; output
  LayerNorm(dropout(attention)), no residual) and an ``MLP`` (E -> 4E -> E); the spectrum tower
  adds a residual around its MLP, the image tower does not. The logit scale is fixed (15.5).

Layouts: galclip's image ``(B, 3, H, W)`` g, r, z nanomaggies is AstroCLIP's stored
``(H, W, 3)`` array transposed by ``galclip.data.astroclip`` (``.T``); the collator's
``permute(0, 3, 2, 1)`` undoes the same transpose, so the ViT sees galclip's orientation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galclip import conventions as C
from galclip.models.base import EncoderConfigMixin
from galclip.models.image_encoder import center_crop

FAMILY = "astroclip"
#: The Legacy Survey viewer's stretch (legacysurvey/imagine ``views.py``, AstroCLIP's ``ToRGB``):
#: band -> (output plane, scale); planes 0, 1, 2 are z, r, g.
RGB_SCALES: dict[str, tuple[int, float]] = {"g": (2, 6.0), "r": (1, 3.4), "z": (0, 2.2)}
RGB_M, RGB_Q = 0.03, 20.0


def legacy_rgb(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` g, r, z nanomaggies -> ``(B, 3, H, W)`` planes z, r, g in [0, 1].

    ``I`` = mean over bands of max(0, s_b x_b + m); each plane = (s_b x_b + m) asinh(Q I) / (√Q I),
    clipped to [0, 1]. The ratio is taken in float64, as numpy computes it in the original.
    """
    scaled = [images[:, i] * RGB_SCALES[b][1] + RGB_M for i, b in enumerate(C.BANDS)]  # (B, H, W)
    total = torch.zeros_like(scaled[0])
    for plane in scaled:
        total = total + plane.clamp(min=0)
    total = total / len(scaled)
    f_total = torch.asinh(RGB_Q * total).double() / math.sqrt(RGB_Q)
    total = (total + (total == 0) * 1e-6).double()
    out = torch.empty_like(images)
    for plane, band in zip(scaled, C.BANDS, strict=True):
        out[:, RGB_SCALES[band][0]] = (plane.double() * f_total / total).to(images.dtype)
    return out.clamp(0, 1)


# ----------------------------------------------------------------------------- image backbone
@dataclass
class AstroDinoConfig:
    """AstroDINO (astroclip/astrodino/config.yaml: vit_large, patch 12, 144 px global crops)."""

    modality: str = "image"
    arch: str = FAMILY
    img_size: int = 144          # centre crop of the 152 px cutout
    patch_size: int = 12         # 12 x 12 patch tokens
    embed_dim: int = 1024        # D
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    block_chunks: int = 4        # keys blocks.{chunk}.{index}; 0 = blocks.{index}
    layerscale: float = 1e-5     # initial layer-scale value (loaded weights replace it)
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.modality != "image" or self.arch != FAMILY:
            raise ValueError(f"AstroDINO config: need modality 'image' and arch {FAMILY!r}")
        if self.block_chunks and self.depth % self.block_chunks:
            raise ValueError(f"AstroDINO config: depth {self.depth} is not a multiple of "
                             f"block_chunks {self.block_chunks}")


def _chunked(blocks: list[nn.Module], chunks: int) -> nn.ModuleList:
    """DINOv2's layout: chunk c holds identities for the first c*k blocks, then its k blocks."""
    if not chunks:
        return nn.ModuleList(blocks)
    k = len(blocks) // chunks
    return nn.ModuleList(nn.ModuleList([nn.Identity()] * i + blocks[i:i + k])
                         for i in range(0, len(blocks), k))


class AstroDinoEncoder(EncoderConfigMixin, nn.Module):
    """Cutouts ``(B, 3, 152, 152)`` nanomaggies -> ``tokens (B, 144, D)``, ``pooled (B, D)``
    (the mean token; AstroCLIP itself pools with its cross-attention head)."""

    modality = "image"

    def __init__(self, cfg: AstroDinoConfig):
        super().__init__()
        from timm.layers import PatchEmbed
        from timm.models.vision_transformer import Block

        self.cfg, d = cfg, cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, 3, d)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))     # stored, unused by AstroCLIP
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, d))  # stored, unused by AstroCLIP
        self.mask_token = nn.Parameter(torch.zeros(1, d))       # DINOv2's iBOT mask token
        norm = partial(nn.LayerNorm, eps=cfg.norm_eps)
        blocks = [Block(d, cfg.num_heads, cfg.mlp_ratio, qkv_bias=True,
                        init_values=cfg.layerscale, norm_layer=norm) for _ in range(cfg.depth)]
        self.blocks = _chunked(blocks, cfg.block_chunks)
        self.norm = norm(d)

    def forward_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """Stretched, cropped ``(B, 3, 144, 144)`` -> normalized patch tokens ``(B, 144, D)``."""
        x = self.patch_embed(rgb)  # (B, N, D), no class token, no position embedding
        for chunk in self.blocks:
            for blk in (chunk if isinstance(chunk, nn.ModuleList) else [chunk]):
                x = blk(x)
        return self.norm(x)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` g, r, z nanomaggies -> the ViT input ``(B, 3, 144, 144)``."""
        if images.ndim != 4 or images.shape[1] != len(C.BANDS):
            raise ValueError(f"AstroDINO: images must be (B, 3, H, W) g, r, z, got {tuple(images.shape)}")
        return center_crop(legacy_rgb(images), self.cfg.img_size)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.forward_rgb(self.preprocess(images))  # (B, N, D)
        return {"tokens": tokens, "pooled": tokens.mean(dim=1)}


# ----------------------------------------------------------------------------- spectrum backbone
@dataclass
class SpecFormerConfig:
    """SpecFormer (AstroCLIP configs/specformer.yaml); field names are its hyper-parameters."""

    modality: str = "spectrum"
    arch: str = FAMILY
    input_dim: int = 22              # slice_section_length + 2 (the left padding)
    embed_dim: int = 768
    num_layers: int = 6
    num_heads: int = 6
    max_len: int = 800               # position embeddings (778 used)
    slice_section_length: int = 20   # pixels per token
    slice_overlap: int = 10          # stride = length - overlap
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.modality != "spectrum" or self.arch != FAMILY:
            raise ValueError(f"SpecFormer config: need modality 'spectrum' and arch {FAMILY!r}")
        if self.input_dim != self.slice_section_length + 2:
            raise ValueError(f"SpecFormer config: input_dim {self.input_dim} must be "
                             f"slice_section_length + 2 = {self.slice_section_length + 2}")


def specformer_tokens(flux: torch.Tensor, length: int = 20, overlap: int = 10) -> torch.Tensor:
    """SpecFormer's preprocessing of ``flux (B, L)`` -> ``(B, 1 + n, length + 2)``.

    Standardize by the spectrum's mean and unbiased std (std clipped below at 0.2), cut windows
    of ``length`` pixels at stride ``length - overlap`` (a last, shorter window is dropped: 777 on
    the DESI grid), left-pad each with 2 zeros, and prepend a token holding (mean - 2) / 2 and
    (std - 2) / 8.
    """
    x = flux.unsqueeze(-1)  # (B, L, 1) as AstroCLIP's spectra
    std, mean = x.std(1, keepdim=True).clamp(min=0.2), x.mean(1, keepdim=True)  # (B, 1, 1)
    windows = ((x - mean) / std)[..., 0].unfold(1, length, length - overlap)  # (B, n, length)
    out = F.pad(windows, (2, 0, 1, 0))  # (B, 1 + n, length + 2)
    out[:, 0, 0] = (mean[:, 0, 0] - 2) / 2
    out[:, 0, 1] = (std[:, 0, 0] - 2) / 8
    return out


class MLP(nn.Module):
    """AstroCLIP's two-layer MLP: ``encoder`` -> GELU -> ``decoder`` -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.encoder, self.decoder = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.decoder(F.gelu(self.encoder(x))))


class SelfAttention(nn.Module):
    """Packed q, k, v projection (``attention``), scaled dot-product attention, ``projection``."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.attention, self.projection = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.num_heads, -1).transpose(1, 2)
                   for z in self.attention(x).split(d, dim=2))  # (B, h, T, d/h) each
        y = F.scaled_dot_product_attention(q, k, v)
        return self.dropout(self.projection(y.transpose(1, 2).reshape(b, t, d)))


class SpecFormerBlock(nn.Module):
    """Pre-LayerNorm transformer block (``layernorm1``, ``attention``, ``layernorm2``, ``mlp``)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.layernorm1, self.layernorm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, num_heads, dropout)
        self.mlp = MLP(dim, 4 * dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layernorm1(x))
        return x + self.mlp(self.layernorm2(x))


class SpecFormerEncoder(EncoderConfigMixin, nn.Module):
    """DESI-grid ``flux (B, 7781)`` (``ivar`` accepted and ignored, as in AstroCLIP) ->
    ``tokens (B, 778, D)``, ``pooled (B, D)`` (mean token)."""

    modality = "spectrum"

    def __init__(self, cfg: SpecFormerConfig):
        super().__init__()
        self.cfg, d = cfg, cfg.embed_dim
        self.data_embed = nn.Linear(cfg.input_dim, d)
        self.position_embed = nn.Embedding(cfg.max_len, d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(SpecFormerBlock(d, cfg.num_heads, cfg.dropout)
                                    for _ in range(cfg.num_layers))
        self.final_layernorm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.input_dim)  # masked-modelling reconstruction, kept for loading

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``(B, T, input_dim)`` -> ``(B, T, D)``."""
        if x.shape[1] > self.cfg.max_len:
            raise ValueError(f"SpecFormer: {x.shape[1]} tokens exceed max_len {self.cfg.max_len}")
        pos = self.position_embed(torch.arange(x.shape[1], device=x.device))  # (T, D)
        x = self.dropout(self.data_embed(x) + pos)
        for block in self.blocks:
            x = block(x)
        return self.final_layernorm(x)

    def forward(self, flux: torch.Tensor, ivar: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if flux.ndim != 2:
            raise ValueError(f"SpecFormer: flux must be (B, L), got {tuple(flux.shape)}")
        c = self.cfg
        tokens = self.forward_tokens(specformer_tokens(flux, c.slice_section_length, c.slice_overlap))
        return {"tokens": tokens, "pooled": tokens.mean(dim=1)}


# ----------------------------------------------------------------------------- CLIP model
class CrossAttentionHead(nn.Module):
    """AstroCLIP's head: one learned query attends over the backbone tokens; LayerNorm after."""

    def __init__(self, embed_dim: int, n_head: int, model_embed_dim: int, dropout: float = 0.0):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, embed_dim))
        self.multihead_attn = nn.MultiheadAttention(embed_dim, n_head, batch_first=True,
                                                    kdim=model_embed_dim, vdim=model_embed_dim)
        self.layernorm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(tokens.shape[0], -1, -1)  # (B, 1, E)
        att = self.multihead_attn(q, tokens, tokens, need_weights=False)[0]
        return self.layernorm(self.dropout(att))[:, 0]  # (B, E); index, never squeeze


class Tower(nn.Module):
    """A backbone, its cross-attention head and MLP (AstroCLIP's ``ImageHead``/``SpectrumHead``).
    Returns the backbone's outputs plus ``embedding`` (B, E), not normalized."""

    def __init__(self, backbone: nn.Module, embed_dim: int, n_head: int, dropout: float,
                 residual: bool):
        super().__init__()
        self.backbone, self.residual = backbone, residual
        self.cross_attention = CrossAttentionHead(embed_dim, n_head, backbone.embed_dim, dropout)
        self.mlp = MLP(embed_dim, 4 * embed_dim, dropout)

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.backbone(*inputs)
        x = self.cross_attention(out["tokens"])
        return {**out, "embedding": x + self.mlp(x) if self.residual else self.mlp(x)}


#: AstroCLIP arguments (besides the backbones) and the released values.
ASTROCLIP_DEFAULTS: dict[str, Any] = {"embed_dim": 1024, "image_heads": 4, "spectrum_heads": 4,
                                      "dropout": 0.1, "logit_scale": 15.5}


class AstroCLIP(nn.Module):
    """The AstroCLIP model with galclip's CLIP surface (``encode_image``, ``encode_spectrum``,
    ``forward``, ``logit_scale``, ``config``); state-dict names are AstroCLIP's."""

    family = FAMILY

    def __init__(self, image_backbone: AstroDinoEncoder, spectrum_backbone: SpecFormerEncoder,
                 **kwargs: Any):
        super().__init__()
        unknown = sorted(set(kwargs) - set(ASTROCLIP_DEFAULTS))
        if unknown:
            raise ValueError(f"AstroCLIP: unknown argument(s) {unknown}; known: {sorted(ASTROCLIP_DEFAULTS)}")
        self.hparams = h = {**ASTROCLIP_DEFAULTS, **kwargs}
        e, p = int(h["embed_dim"]), float(h["dropout"])
        self.image_encoder = Tower(image_backbone, e, int(h["image_heads"]), p, residual=False)
        self.spectrum_encoder = Tower(spectrum_backbone, e, int(h["spectrum_heads"]), p, residual=True)
        self.register_buffer("_scale", torch.tensor(float(h["logit_scale"])), persistent=False)

    @property
    def embed_dim(self) -> int:
        return int(self.hparams["embed_dim"])

    @property
    def config(self) -> dict[str, Any]:
        return {"family": FAMILY, **self.hparams,
                "image_encoder": self.image_encoder.backbone.config,
                "spectrum_encoder": self.spectrum_encoder.backbone.config}

    def logit_scale(self) -> torch.Tensor:
        return self._scale  # fixed in the released model

    def _tensor(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(x if torch.is_tensor(x) else np.require(x, np.float32, "W"),
                               dtype=torch.float32, device=self._scale.device)

    def encode_image(self, images: Any, normalize: bool = True) -> torch.Tensor:
        """Cutouts ``(B, 3, 152, 152)`` g, r, z nanomaggies -> ``(B, embed_dim)``."""
        z = self.image_encoder(self._tensor(images))["embedding"]
        return F.normalize(z, dim=-1) if normalize else z

    def encode_spectrum(self, flux: Any, ivar: Any = None, normalize: bool = True) -> torch.Tensor:
        """DESI-grid ``flux (B, 7781)`` -> ``(B, embed_dim)``; ``ivar`` is ignored (as AstroCLIP)."""
        z = self.spectrum_encoder(self._tensor(flux))["embedding"]
        return F.normalize(z, dim=-1) if normalize else z

    def forward(self, images: Any, flux: Any, ivar: Any = None) -> dict[str, torch.Tensor]:
        return {"image_embedding": self.encode_image(images),
                "spectrum_embedding": self.encode_spectrum(flux, ivar),
                "logit_scale": self.logit_scale()}


def build_astroclip(config: dict[str, Any]) -> AstroCLIP:
    """An AstroCLIP (fresh weights) from a ``model.config`` dict; defaults give the released size."""
    cfg = {k: v for k, v in config.items() if k != "family"}
    image = AstroDinoEncoder(AstroDinoConfig(**cfg.pop("image_encoder", {})))
    spectrum = SpecFormerEncoder(SpecFormerConfig(**cfg.pop("spectrum_encoder", {})))
    return AstroCLIP(image, spectrum, **cfg)
