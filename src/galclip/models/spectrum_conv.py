"""Convolutional spectrum encoder: a 1-D ResNet on the log-wavelength grid (the CPU presets).

Why a convolutional front end: on a few thousand spectra a transformer over 20-pixel slices
(SpecFormer-nano) learns redshift poorly even with the labels (R² 0.84), while a small 1-D CNN
that keeps *where* its features lie reaches R² 0.93 in minutes (benchmarks/RESULTS.md). On a log-λ grid a
redshift is a pure shift, so local filters meet each rest-frame line complex with one shape at
every redshift, and a position-aware head (flatten, not global pooling) reads off where it is.

Input normalization (written down so that every caller feeds the same units):

1. bad pixels (``ivar <= 0`` or a non-finite value) get weight 0;
2. ivar-weighted rebin onto ``log_bins`` log-λ pixels (:func:`spectrum_encoder.log_rebin`);
3. per-spectrum ``(flux - mean) / std`` over the valid bins (:func:`spectrum_encoder.standardize`);
4. three channels per bin: the standardized flux (0 where invalid), the validity flag, and
   ``asinh(std * sqrt(ivar))`` (the S/N of a one-std feature; 0 where invalid);
5. the statistics ``[asinh(mean), log(std)]`` (the spectrum's brightness and contrast, which the
   standardization removes) enter the head beside the flattened convolutional features.

A bad pixel's flux is excluded at step 2, so it never influences any output.

Architecture: a ``stem_kernel`` convolution, then per stage ``blocks`` residual blocks (two
``kernel``-tap convolutions with BatchNorm and GELU) and a max-pool by 2; the final feature map
``(B, C, log_bins / 2**stages)`` is flattened with the statistics and projected to ``embed_dim``.
Output, as the other encoders: ``pooled (B, D)``, ``tokens (B, 1 + P, D)`` (token 0 = pooled, then
one token per final position with a learned position embedding, for the CLIP cross-attention
head) and ``padding_mask (B, 1 + P)`` (True = a position whose window held no valid pixel).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from galclip import conventions as C
from galclip.models.base import EncoderConfigMixin
from galclip.models.spectrum_encoder import log_bin_index, log_rebin, standardize, valid_pixels


@dataclass
class ConvSpectrumEncoderConfig:
    """Every field is read by :class:`ConvSpectrumEncoder`; the dict form rebuilds the model."""

    modality: str = "spectrum"
    arch: str = "conv"
    n_pixels: int = C.N_WAVE
    log_bins: int = 1024
    channels: list[int] = field(default_factory=lambda: [32, 64, 96])  # one entry per stage
    blocks: int = 1                 # residual blocks per stage
    stem_kernel: int = 7
    kernel: int = 5
    embed_dim: int = 256            # D of pooled and tokens
    dropout: float = 0.0            # before the final projection (training only)

    def __post_init__(self) -> None:
        if self.modality != "spectrum" or self.arch != "conv":
            raise ValueError("conv spectrum encoder config: need modality 'spectrum' and arch 'conv'")
        if not self.channels or min(self.channels) < 1 or self.blocks < 1:
            raise ValueError("conv spectrum encoder config: channels must be a non-empty list of "
                             "positive widths and blocks >= 1")
        if self.kernel % 2 == 0 or self.stem_kernel % 2 == 0:
            raise ValueError("conv spectrum encoder config: kernel and stem_kernel must be odd")
        if self.log_bins % (2 ** len(self.channels)):
            raise ValueError(f"conv spectrum encoder config: log_bins {self.log_bins} must be "
                             f"divisible by 2**{len(self.channels)} (one max-pool per stage)")
        log_bin_index(self.n_pixels, self.log_bins)  # refuses bins narrower than a pixel

    @property
    def n_positions(self) -> int:
        return self.log_bins // 2 ** len(self.channels)


class ResBlock1d(nn.Module):
    """``x + conv-BN-GELU-conv-BN(x)`` (a 1x1 projection when the width changes), then GELU."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=pad, bias=False),
                                  nn.BatchNorm1d(c_out), nn.GELU(),
                                  nn.Conv1d(c_out, c_out, kernel, padding=pad, bias=False),
                                  nn.BatchNorm1d(c_out))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.skip(x) + self.body(x))


class ConvSpectrumEncoder(EncoderConfigMixin, nn.Module):
    """``(flux, ivar)`` each ``(B, 7781)`` -> ``pooled``, ``tokens`` and ``padding_mask``."""

    modality = "spectrum"

    def __init__(self, config: ConvSpectrumEncoderConfig | None = None, **kwargs: Any):
        super().__init__()
        cfg = config or ConvSpectrumEncoderConfig(**kwargs)
        self.cfg = cfg
        c0, D = cfg.channels[0], cfg.embed_dim
        self.stem = nn.Sequential(nn.Conv1d(3, c0, cfg.stem_kernel, padding=cfg.stem_kernel // 2,
                                            bias=False), nn.BatchNorm1d(c0), nn.GELU())
        stages, c_in = [], c0
        for c in cfg.channels:
            stages += [ResBlock1d(c_in if i == 0 else c, c, cfg.kernel) for i in range(cfg.blocks)]
            stages.append(nn.MaxPool1d(2))
            c_in = c
        self.stages = nn.Sequential(*stages)
        P, c_last = cfg.n_positions, cfg.channels[-1]
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c_last * P + 2, D))
        self.head_norm = nn.LayerNorm(D)
        self.token_proj = nn.Linear(c_last, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, P, D))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        index = torch.tensor(log_bin_index(cfg.n_pixels, cfg.log_bins), dtype=torch.long)
        self.register_buffer("log_bin_index", index, persistent=False)

    def rebin(self, flux: torch.Tensor, ivar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 1-2: DESI-grid ``(B, 7781)`` flux and ivar -> log-λ ``(B, log_bins)`` flux and ivar
        (ivar 0 marks a bin without a valid pixel). Training augments spectra on this grid, where
        a redshift is a shift by whole bins."""
        n = self.cfg.n_pixels
        if flux.shape != ivar.shape or flux.ndim != 2 or flux.shape[1] != n:
            raise ValueError(f"spectrum encoder expects flux and ivar of shape (B, {n}), "
                             f"got {tuple(flux.shape)} and {tuple(ivar.shape)}")
        flux, ivar = flux.float(), ivar.float()
        return log_rebin(flux, ivar, valid_pixels(flux, ivar), self.log_bin_index, self.cfg.log_bins)

    def inputs(self, flux: torch.Tensor, ivar: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Steps 3-5 on the log-λ grid: ``(channels (B, 3, L), stats (B, 2), valid (B, L))``."""
        valid = valid_pixels(flux, ivar)
        x, mean, std = standardize(flux, valid)
        root = torch.where(valid, ivar, torch.zeros_like(ivar)).sqrt()
        snr = torch.where(valid, torch.asinh(std[:, None] * root), torch.zeros_like(x))
        channels = torch.stack([x, valid.to(x.dtype), snr], dim=1)           # (B, 3, L)
        stats = torch.stack([torch.asinh(mean), std.log()], dim=-1)         # (B, 2)
        return channels, stats, valid

    def forward_rebinned(self, flux: torch.Tensor, ivar: torch.Tensor) -> dict[str, torch.Tensor]:
        """The encoder on log-λ flux and ivar ``(B, log_bins)`` (as :meth:`rebin` returns them)."""
        if flux.shape != ivar.shape or flux.ndim != 2 or flux.shape[1] != self.cfg.log_bins:
            raise ValueError(f"forward_rebinned expects (B, {self.cfg.log_bins}) flux and ivar, "
                             f"got {tuple(flux.shape)} and {tuple(ivar.shape)}")
        channels, stats, valid = self.inputs(flux.float(), ivar.float())
        fmap = self.stages(self.stem(channels))                              # (B, C, P)
        pooled = self.head_norm(self.head(torch.cat([fmap.flatten(1), stats], dim=1)))  # (B, D)
        local = self.token_proj(fmap.transpose(1, 2)) + self.pos_embed      # (B, P, D)
        seen = F.adaptive_max_pool1d(valid[:, None].float(), self.cfg.n_positions)[:, 0] > 0
        pad = torch.cat([torch.zeros_like(seen[:, :1]), ~seen], dim=1)       # (B, 1 + P)
        return {"pooled": pooled, "tokens": torch.cat([pooled[:, None], local], 1), "padding_mask": pad}

    def forward(self, flux: torch.Tensor, ivar: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_rebinned(*self.rebin(flux, ivar))
