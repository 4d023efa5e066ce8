"""Image augmentations that respect the physics of survey cutouts, and DINO multi-crop.

All functions work on batches of physical cutouts ``(B, bands, H, W)`` in nanomaggies, on any
device, so they run inside the training step (on the GPU when there is one). As Stein et al.
(2021, "Self-supervised representation learning from 12 million galaxy images") the views
differ only in ways the sky could: the orientation (90 degree rotations and flips: galaxies have
no preferred orientation, and pixel grids are square), the exact centring (a shift of a few
pixels), the seeing (an extra Gaussian PSF blur per band) and the depth (extra Gaussian noise per
band, in units of the band's noise-level scale). There is no colour jitter: colours are physics
(redshift, stellar population), not nuisance.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device)


def rot90_flip(x: torch.Tensor) -> torch.Tensor:
    """Each image gets one of the 8 symmetries of the square at random. ``x (B, C, H, H)``."""
    k = torch.randint(0, 4, (x.shape[0],), device=x.device)
    out = x.clone()
    for r in range(1, 4):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalized 1-D Gaussian kernels ``(n, 2 radius + 1)`` for pixel widths ``sigma (n,)``."""
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    return k / k.sum(-1, keepdim=True)


def psf_blur(x: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Convolve each band of each image with a Gaussian of width U(0, sigma_max) pixels.

    A Gaussian PSF of width s_0 convolved with one of width s gives width sqrt(s_0^2 + s^2):
    the same galaxy seen in worse seeing. Separable, reflect-padded, one kernel per (image, band).
    """
    if sigma_max <= 0:
        return x
    B, C, H, W = x.shape
    radius = max(1, math.ceil(3 * sigma_max))
    k = gaussian_kernels(_uniform(B * C, 0.0, sigma_max, x.device), radius)  # (B C, K)
    y = F.pad(x.reshape(1, B * C, H, W), (radius,) * 4, mode="reflect")
    y = F.conv2d(y, k[:, None, None, :].to(x.dtype), groups=B * C)      # along x
    y = F.conv2d(y, k[:, None, :, None].to(x.dtype), groups=B * C)      # along y
    return y.reshape(B, C, H, W)


def add_noise(x: torch.Tensor, band_scale: torch.Tensor, noise_max: float) -> torch.Tensor:
    """Add Gaussian noise of std U(0, noise_max) x band_scale_b per image and band (shallower data)."""
    if noise_max <= 0:
        return x
    B, C = x.shape[:2]
    sigma = _uniform(B * C, 0.0, noise_max, x.device).view(B, C, 1, 1) * band_scale.view(1, C, 1, 1)
    return x + sigma.to(x.dtype) * torch.randn_like(x)


def random_crops(x: torch.Tensor, size: int, max_offset: int) -> torch.Tensor:
    """``size`` x ``size`` crops whose centre is shifted by up to ``max_offset`` px (per axis)
    from the image centre, independently per image; the shift is clipped to stay inside."""
    B, C, H, W = x.shape
    if size > min(H, W):
        raise ValueError(f"crop size {size} is larger than the {H}x{W} cutout")
    room = (min(H, W) - size) // 2
    m = min(max_offset, room)
    off = torch.randint(-m, m + 1, (B, 2)).tolist()
    top0, left0 = (H - size) // 2, (W - size) // 2
    return torch.stack([x[i, :, top0 + dy:top0 + dy + size, left0 + dx:left0 + dx + size]
                        for i, (dy, dx) in enumerate(off)])


def augment_view(x: torch.Tensor, size: int, max_offset: int, band_scale: torch.Tensor,
                 aug: dict) -> torch.Tensor:
    """One augmented view of a batch: crop (shift), symmetry, PSF blur, noise.

    Cropping first is cheaper and equivalent: the crop centre's shift is symmetric in x and y.
    """
    x = random_crops(x, size, max_offset)
    if aug["rot90_flip"]:
        x = rot90_flip(x)
    x = psf_blur(x, aug["psf_sigma_max"])
    return add_noise(x, band_scale, aug["noise_max"])


def multi_crop(x: torch.Tensor, band_scale: torch.Tensor, crops: dict, aug: dict
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """DINO multi-crop: ``n_global`` views of ``global_size`` px and ``n_local`` of ``local_size``."""
    glob = [augment_view(x, crops["global_size"], aug["max_shift"], band_scale, aug)
            for _ in range(crops["n_global"])]
    local = [augment_view(x, crops["local_size"], crops["local_max_offset"], band_scale, aug)
             for _ in range(crops["n_local"])]
    return glob, local
