"""Spectrum encoder: a SpecFormer-style transformer over DESI spectra that respects the ivar.

As AstroCLIP's SpecFormer (Parker et al. 2024, Sec. 3.2): the 7781-pixel spectrum is cut into
overlapping slices (20 pixels, stride 10: 778 slices, the last one padded), each spectrum is
standardized by its own mean and standard deviation, which are carried in one extra token, and
a stack of pre-LayerNorm transformer blocks with learned position embeddings runs over the
779 tokens. Attention uses PyTorch's fused ``scaled_dot_product_attention``.

Optionally (``log_bins > 0``, the CPU-sized presets) the spectrum is first rebinned onto
``log_bins`` pixels uniform in log wavelength, each the inverse-variance weighted mean of the
DESI pixels whose centres fall in it (its ivar is their summed ivar). On a log-λ grid a redshift
is a pure shift and a rest-frame line complex ([O III] 4959/5007, Hα + [N II], Ca H&K) keeps one
shape at every redshift, so the shared slice embedding meets the same pattern wherever it lies;
2048 bins (73 km/s, 0.9-2.4 Å) keep lines resolved at the DESI resolution and cut the tokens
from 778 to 204. On the simulated CPU demo set the k-NN redshift R² of the frozen
masked-modelling embeddings rose from 0.22 to 0.32 (``benchmarks/pretrain_quality.py``), and a
network trained with the labels from 0.78 (linear grid, 80-pixel slices) to 0.82
(``benchmarks/RESULTS.md``). ``log_bins = 0`` is AstroCLIP's linear grid.

Unlike AstroCLIP, the inverse variance is used: a pixel with ``ivar <= 0`` (or a non-finite
flux or ivar) is *bad*. Bad pixels are excluded from the mean and std, their value is replaced
by zero and a per-pixel validity flag is fed with every slice, so a bad pixel's flux never
influences any output. A slice without any valid pixel is a padding token: other tokens do not
attend to it and it is left out of the pooled feature (``padding_mask`` True).

Output: ``tokens (B, 1 + N, D)`` (token 0 carries the standardization statistics),
``pooled (B, D)`` = mean of the valid tokens after the final LayerNorm, ``padding_mask (B, 1 + N)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galclip import conventions as C
from galclip.models.base import EncoderConfigMixin

STD_FLOOR = 1e-4  # 1e-17 erg/s/cm2/A; keeps log(std) finite for flat or one-pixel spectra


@dataclass
class SpectrumEncoderConfig:
    """Every field is read by :class:`SpectrumEncoder`; the dict form rebuilds the model."""

    modality: str = "spectrum"
    n_pixels: int = C.N_WAVE     # input length (DESI coadd grid)
    slice_size: int = 20         # pixels per token
    slice_stride: int = 10       # overlap = slice_size - slice_stride
    embed_dim: int = 128         # D
    depth: int = 4               # transformer blocks
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0         # attention, MLP and embedding dropout (training only)
    log_bins: int = 0            # > 0: ivar-weighted rebin onto this many log-wavelength pixels

    def __post_init__(self) -> None:
        if self.modality != "spectrum":
            raise ValueError(f"spectrum encoder config: modality must be 'spectrum', got {self.modality!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"spectrum encoder config: embed_dim {self.embed_dim} is not divisible "
                             f"by num_heads {self.num_heads}")
        if self.log_bins < 0:
            raise ValueError(f"spectrum encoder config: log_bins must be >= 0, got {self.log_bins}")
        if not 0 < self.slice_stride <= self.slice_size <= self.n_tokenized:
            raise ValueError("spectrum encoder config: need 0 < slice_stride <= slice_size <= "
                             "n_pixels (or log_bins when > 0)")
        if self.log_bins:
            log_bin_index(self.n_pixels, self.log_bins)  # refuses bins narrower than a pixel

    @property
    def n_tokenized(self) -> int:
        """Length of the sequence that is cut into slices (after any log-λ rebinning)."""
        return self.log_bins or self.n_pixels

    @property
    def n_slices(self) -> int:
        return math.ceil((self.n_tokenized - self.slice_size) / self.slice_stride) + 1


def log_grid_span(n_pixels: int) -> tuple[float, float]:
    """``(ln λ_lo, ln λ_hi)``: the blue edge of the first and the red edge of the last DESI pixel."""
    half = C.WAVE_STEP / 2
    return (float(np.log(C.WAVE_MIN - half)),
            float(np.log(C.WAVE_MIN + C.WAVE_STEP * (n_pixels - 1) + half)))


def log_bin_index(n_pixels: int, n_bins: int) -> np.ndarray:
    """For each DESI pixel (``WAVE_MIN + WAVE_STEP * i``), the index of its log-λ bin.

    The ``n_bins`` bins split [first pixel's blue edge, last pixel's red edge] evenly in log λ; a
    pixel belongs to the bin holding its centre. Raises ``ValueError`` if a bin would hold no
    pixel (bins narrower than one pixel at the blue end).
    """
    wave = C.WAVE_MIN + C.WAVE_STEP * np.arange(n_pixels, dtype=np.float64)
    edges = np.exp(np.linspace(*log_grid_span(n_pixels), n_bins + 1))
    index = np.clip(np.searchsorted(edges, wave, side="right") - 1, 0, n_bins - 1)
    if np.bincount(index, minlength=n_bins).min() == 0:
        limit = int(np.log(edges[-1] / edges[0]) / np.log1p(C.WAVE_STEP / wave[0]))
        raise ValueError(f"spectrum encoder config: log_bins={n_bins} leaves log-λ bins without a "
                         f"{C.WAVE_STEP} Å pixel; use at most about {limit}")
    return index


def log_rebin(flux: torch.Tensor, ivar: torch.Tensor, valid: torch.Tensor, index: torch.Tensor,
              n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-variance weighted mean flux and summed ivar per log-λ bin, ``(B, n_bins)`` each.

    Bad pixels (``valid`` False) get weight 0; a bin without a valid pixel has flux 0, ivar 0.
    """
    w = torch.where(valid, ivar, torch.zeros_like(ivar))
    fw = torch.where(valid, flux, torch.zeros_like(flux)) * w
    den = w.new_zeros(w.shape[0], n_bins).index_add_(1, index, w)
    num = w.new_zeros(w.shape[0], n_bins).index_add_(1, index, fw)
    good = den > 0
    return torch.where(good, num / den.where(good, torch.ones_like(den)), torch.zeros_like(num)), den


def valid_pixels(flux: torch.Tensor, ivar: torch.Tensor) -> torch.Tensor:
    """Bool ``(B, L)``: ivar > 0 and both values finite."""
    return (ivar > 0) & torch.isfinite(ivar) & torch.isfinite(flux)


def standardize(flux: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-spectrum ``(flux - mean) / std`` over valid pixels; bad pixels set to 0.

    Returns ``(x (B, L), mean (B,), std (B,))``.
    """
    w = valid.to(flux.dtype)
    n = w.sum(-1).clamp_min(1.0)
    f = torch.where(valid, flux, torch.zeros_like(flux))
    mean = f.sum(-1) / n
    var = ((f - mean[:, None]) ** 2 * w).sum(-1) / n
    std = var.sqrt().clamp_min(STD_FLOOR)
    x = torch.where(valid, (f - mean[:, None]) / std[:, None], torch.zeros_like(f))
    return x, mean, std


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def attention(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, T), True = attend
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, hd)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, D)))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


class SpectrumEncoder(EncoderConfigMixin, nn.Module):
    """``(flux, ivar)`` each ``(B, 7781)`` -> tokens, pooled and padding mask."""

    modality = "spectrum"

    def __init__(self, config: SpectrumEncoderConfig | None = None, **kwargs: Any):
        super().__init__()
        cfg = config or SpectrumEncoderConfig(**kwargs)
        self.cfg = cfg
        D = cfg.embed_dim
        self.slice_embed = nn.Linear(2 * cfg.slice_size, D)  # [values, validity flags] -> D
        self.stats_embed = nn.Linear(2, D)                   # [asinh(mean), log(std)] -> D
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.n_slices, D))
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(D, cfg.num_heads, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(D)
        if cfg.log_bins:  # derived from the config, so not part of the saved weights
            index = torch.tensor(log_bin_index(cfg.n_pixels, cfg.log_bins), dtype=torch.long)
            self.register_buffer("log_bin_index", index, persistent=False)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def slice(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` -> overlapping slices ``(B, N, slice_size)``, right-padded with zeros."""
        cfg = self.cfg
        length = (cfg.n_slices - 1) * cfg.slice_stride + cfg.slice_size
        x = F.pad(x, (0, length - x.shape[-1]))  # x: (B, n_tokenized)
        return x.unfold(-1, cfg.slice_size, cfg.slice_stride)

    def embed(self, flux: torch.Tensor, ivar: torch.Tensor) -> dict[str, torch.Tensor]:
        """Token embeddings before position embeddings, plus the standardized targets.

        Returns ``x (B, 1+N, D)``, ``padding_mask (B, 1+N)``, ``values``/``valid``/``ivar``
        slices ``(B, N, S)`` (values and ivar in standardized units), ``mean``/``std`` ``(B,)``.
        """
        if flux.shape != ivar.shape or flux.ndim != 2 or flux.shape[1] != self.cfg.n_pixels:
            raise ValueError(f"spectrum encoder expects flux and ivar of shape (B, {self.cfg.n_pixels}),"
                             f" got {tuple(flux.shape)} and {tuple(ivar.shape)}")
        flux, ivar = flux.float(), ivar.float()
        valid = valid_pixels(flux, ivar)
        if self.cfg.log_bins:
            flux, ivar = log_rebin(flux, ivar, valid, self.log_bin_index, self.cfg.log_bins)
            valid = ivar > 0
        x, mean, std = standardize(flux, valid)
        values, vflag = self.slice(x), self.slice(valid.float())          # (B, N, S)
        ivar_std = self.slice(torch.where(valid, ivar, torch.zeros_like(ivar))) * std[:, None, None] ** 2
        tokens = self.slice_embed(torch.cat([values, vflag], dim=-1))      # (B, N, D)
        stats = self.stats_embed(torch.stack([torch.asinh(mean), std.log()], dim=-1))  # (B, D)
        x = torch.cat([stats[:, None], tokens], dim=1)                    # (B, 1+N, D)
        pad = torch.cat([torch.zeros_like(vflag[:, :1, 0], dtype=torch.bool),
                         vflag.sum(-1) == 0], dim=1)                       # (B, 1+N)
        return {"x": x, "padding_mask": pad, "values": values, "valid": vflag > 0,
                "ivar": ivar_std, "mean": mean, "std": std}

    def forward_embeddings(self, x: torch.Tensor, padding_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Transformer over token embeddings ``(B, 1+N, D)`` (position embeddings added here)."""
        x = self.embed_drop(x + self.pos_embed)
        keep = ~padding_mask
        for blk in self.blocks:
            x = blk(x, keep)
        tokens = self.norm(x)                                              # (B, 1+N, D)
        w = keep.to(tokens.dtype)[..., None]
        pooled = (tokens * w).sum(1) / w.sum(1)                            # (B, D)
        return {"tokens": tokens, "pooled": pooled, "padding_mask": padding_mask}

    def forward(self, flux: torch.Tensor, ivar: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.embed(flux, ivar)
        return self.forward_embeddings(e["x"], e["padding_mask"])
