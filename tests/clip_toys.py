"""Small encoders that follow the galclip encoder protocol, for fast CLIP tests."""
from __future__ import annotations

import torch
from torch import nn

N_WAVE, SLICE = 7781, 100


class ToyImageEncoder(nn.Module):
    modality = "image"

    def __init__(self, dim: int = 16, patch: int = 38):
        super().__init__()
        self.embed_dim, self.config = dim, {"toy": "image", "dim": dim, "patch": patch}
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.block = nn.Linear(dim, dim)

    def forward(self, images):
        x = self.proj(torch.asinh(images)).flatten(2).transpose(1, 2)  # (B, T, D)
        x = x + torch.tanh(self.block(x))
        return {"tokens": x, "pooled": x.mean(1)}


class ToySpectrumEncoder(nn.Module):
    modality = "spectrum"

    def __init__(self, dim: int = 16):
        super().__init__()
        self.embed_dim, self.config = dim, {"toy": "spectrum", "dim": dim}
        self.proj = nn.Linear(SLICE, dim)

    def forward(self, flux, ivar):
        pad = (-N_WAVE) % SLICE
        good = ivar > 0
        x = torch.nn.functional.pad(torch.where(good, flux, 0.0), (0, pad)).unflatten(1, (-1, SLICE))
        mask = ~torch.nn.functional.pad(good, (0, pad)).unflatten(1, (-1, SLICE)).any(-1)  # (B, T)
        tokens = self.proj(x)  # (B, T, D)
        return {"tokens": tokens, "pooled": tokens.mean(1), "padding_mask": mask}


def toy_factory(cfg):
    cfg = dict(cfg)
    kind = cfg.pop("toy")
    return ToyImageEncoder(**cfg) if kind == "image" else ToySpectrumEncoder(**cfg)


def toy_clip(seed: int = 0, **kwargs):
    from galclip.models.clip import GalaxyCLIP

    torch.manual_seed(seed)
    return GalaxyCLIP(ToyImageEncoder(), ToySpectrumEncoder(), **{"embed_dim": 8, **kwargs})


def toy_batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 152, 152, generator=g)
    flux = torch.randn(n, N_WAVE, generator=g)
    ivar = torch.rand(n, N_WAVE, generator=g) + 0.5
    return images, flux, ivar


def nano_clip(seed: int = 0, **kwargs):
    """A GalaxyCLIP over the real encoders (one-block image-nano and spectrum-nano), 8-d."""
    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP

    torch.manual_seed(seed)
    return GalaxyCLIP(create_encoder("image-nano", depth=1), create_encoder("spectrum-nano", depth=1),
                      **{"embed_dim": 8, **kwargs})
