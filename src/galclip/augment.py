"""Augmentations that respect the physics of survey cutouts and spectra, and DINO multi-crop:
the one place every training stage (pretraining objectives, alignment) and the supervised
baselines of the evaluation take their views from.

Image functions work on batches of physical cutouts ``(B, bands, H, W)`` in nanomaggies, on any
device, so they run inside the training step (on the GPU when there is one). As Stein et al.
(2021, "Self-supervised representation learning from 12 million galaxy images") the views
differ only in ways the sky could: the orientation (90 degree rotations and flips: galaxies have
no preferred orientation, and pixel grids are square), the exact centring (a shift of a few
pixels), the seeing (an extra Gaussian PSF blur per band) and the depth (extra Gaussian noise per
band, in units of the band's noise-level scale). There is no colour jitter: colours are physics
(redshift, stellar population), not nuisance.

Spectrum functions work on ``(B, L)`` flux and inverse variance: extra noise drawn from the ivar,
lost spans (ivar 0), whole-bin redshifts on the log-λ grid, and a smooth multiplicative change
of the spectrum's shape (``calibration_view``): what a fibre spectrum's broad-band shape
carries beside the redshift — the spectrophotometric calibration (a few per cent, Guy et al.
2023, AJ 165, 144), the fibre's aperture on a galaxy with colour gradients, the chromatic seeing
— changes it by ~10 % between otherwise equal spectra, so a redshift read from features
(lines, breaks) should not follow it.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def one_thread():
    """torch on one intra-op thread inside the block (the previous count restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_one_thread(fn):
    """Run a view function on one intra-op thread when its first tensor is on the CPU. These
    views are copies, element-wise arithmetic and random draws: the same bits on any number of
    threads (tested), and on a 2-core machine shared with other jobs torch's two threads spent
    ~10x the CPU of one waiting for each other (benchmarks/RESULTS.md)."""

    @functools.wraps(fn)
    def wrapped(x: torch.Tensor, *args, **kwargs):
        if x.device.type != "cpu" or torch.get_num_threads() == 1:
            return fn(x, *args, **kwargs)
        with one_thread():
            return fn(x, *args, **kwargs)

    return wrapped


def _uniform(n: int, lo: float, hi: float, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device)


def dihedral_params(n: int, generator: torch.Generator | None = None, device=None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random quarter-turn counts ``k (n,)`` and flips ``(n,)`` bool: the 8 symmetries of the
    square, equally likely (galaxies have no preferred orientation; pixel grids are square)."""
    k = torch.randint(0, 4, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device).lt(0.5)
    return k, flip


@cpu_one_thread
def apply_dihedral(x: torch.Tensor, k, flip) -> torch.Tensor:
    """Cutout i of ``x (B, C, H, H)`` rotated by ``k[i]`` quarter turns, then mirrored if ``flip[i]``."""
    k = torch.as_tensor(k, device=x.device)
    flip = torch.as_tensor(flip, dtype=torch.bool, device=x.device)
    out = x.clone()
    for r in range(1, 4):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def random_dihedral(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of ``x (B, C, H, H)`` gets one of the 8 symmetries of the square at random."""
    return apply_dihedral(x, *dihedral_params(x.shape[0], generator,
                                              None if generator is not None else x.device))


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


@cpu_one_thread
def add_noise(x: torch.Tensor, band_scale: torch.Tensor, noise_max: float) -> torch.Tensor:
    """Add Gaussian noise of std U(0, noise_max) x band_scale_b per image and band (shallower data)."""
    if noise_max <= 0:
        return x
    B, C = x.shape[:2]
    sigma = _uniform(B * C, 0.0, noise_max, x.device).view(B, C, 1, 1) * band_scale.view(1, C, 1, 1)
    return x + sigma.to(x.dtype) * torch.randn_like(x)


@cpu_one_thread
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


@dataclass
class ImageViews:
    """How a training view of a cutout differs from it (Stein et al. 2021)."""

    rot90_flip: bool = True        # one of the 8 symmetries of the square
    max_shift: int = 4             # jitter of the crop centre, up to this many px
    psf_sigma_max: float = 1.0     # extra Gaussian PSF blur, sigma up to this (px)
    noise_max: float = 1.0         # extra Gaussian noise, up to this many band scales


@dataclass
class Crops:
    """DINO multi-crop (Caron et al. 2021): global and local views of each cutout."""

    n_global: int = 2
    global_size: int = 144         # px; global views jitter by ImageViews.max_shift
    n_local: int = 4
    local_size: int = 60
    local_max_offset: int = 30     # px; local views come from anywhere within this offset


def augment_view(x: torch.Tensor, size: int, max_offset: int, band_scale: torch.Tensor,
                 aug: ImageViews) -> torch.Tensor:
    """One augmented view of a batch: crop (shift), symmetry, PSF blur, noise.

    Cropping first is cheaper and equivalent: the crop centre's shift is symmetric in x and y.
    """
    x = random_crops(x, size, max_offset)
    if aug.rot90_flip:
        x = random_dihedral(x)
    x = psf_blur(x, aug.psf_sigma_max)
    return add_noise(x, band_scale, aug.noise_max)


def multi_crop(x: torch.Tensor, band_scale: torch.Tensor, crops: Crops, aug: ImageViews
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """DINO multi-crop: ``n_global`` views of ``global_size`` px and ``n_local`` of ``local_size``."""
    glob = [augment_view(x, crops.global_size, aug.max_shift, band_scale, aug)
            for _ in range(crops.n_global)]
    local = [augment_view(x, crops.local_size, crops.local_max_offset, band_scale, aug)
             for _ in range(crops.n_local)]
    return glob, local


# ----------------------------------------------------------------------------- spectra
@cpu_one_thread
def ivar_noise(flux: torch.Tensor, ivar: torch.Tensor, scale: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``flux + scale * N(0, 1/ivar)`` on valid pixels (ivar > 0); bad pixels unchanged."""
    if scale <= 0:
        return flux
    sigma = torch.where(ivar > 0, ivar.clamp_min(1e-30).rsqrt(), torch.zeros_like(ivar))
    noise = torch.randn(flux.shape, generator=generator, device="cpu").to(flux.device)
    return flux + scale * sigma * noise


@cpu_one_thread
def noise_view(flux: torch.Tensor, ivar: torch.Tensor, max_extra: float,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Add Gaussian noise of variance ``a² / ivar`` with ``a ~ U(0, max_extra)`` per spectrum; the
    returned ivar is ``ivar / (1 + a²)``. Bins with ivar 0 stay bad (their flux is untouched)."""
    good = ivar > 0
    a = max_extra * torch.rand(flux.shape[0], 1, device=flux.device, generator=generator)
    sigma = torch.where(good, ivar.clamp_min(1e-30).rsqrt(), torch.zeros_like(ivar))
    eps = torch.randn(flux.shape, device=flux.device, generator=generator)
    return flux + a * sigma * eps * good, ivar / (1 + a ** 2)


@cpu_one_thread
def calibration_view(flux: torch.Tensor, ivar: torch.Tensor, rms: float,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each spectrum times ``c = 1 + sum_{k=1..3} a_k P_k(x)`` (Legendre, x in [-1, 1] over the
    grid, a_k ~ N(0, s) with s such that the expected rms of ``c - 1`` is ``rms``); the ivar
    divided by ``c^2``, so the S/N of every pixel is kept. ``rms`` <= 0 returns the input."""
    if rms <= 0:
        return flux, ivar
    B, L = flux.shape
    x = torch.linspace(-1.0, 1.0, L, device=flux.device)
    legendre = torch.stack([x, 1.5 * x ** 2 - 0.5, 2.5 * x ** 3 - 1.5 * x])          # (3, L)
    s = rms / math.sqrt(sum(1.0 / (2 * k + 1) for k in (1, 2, 3)))
    a = s * torch.randn(B, 3, device=flux.device, generator=generator)
    c = (1.0 + a @ legendre).clamp_min(0.2)
    return flux * c, ivar / c ** 2


@cpu_one_thread
def span_dropout(ivar: torch.Tensor, n_spans: int, span_len: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Set ``n_spans`` random spans of ``span_len`` bins per spectrum to ivar 0 (lost pixels)."""
    B, L = ivar.shape
    if n_spans <= 0 or span_len <= 0:
        return ivar
    start = torch.randint(0, max(1, L - span_len), (B, n_spans), device=ivar.device, generator=generator)
    pos = torch.arange(L, device=ivar.device)
    hit = ((pos[None, None] >= start[..., None]) & (pos[None, None] < start[..., None] + span_len)).any(1)
    return torch.where(hit, torch.zeros_like(ivar), ivar)


@cpu_one_thread
def shift_view(flux: torch.Tensor, ivar: torch.Tensor, shift: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Redshift each log-λ spectrum by ``shift[i]`` whole bins (positive = redder): flux moves to
    longer wavelengths; bins shifted in from outside the observed range get ivar 0."""
    B, L = flux.shape
    src = torch.arange(L, device=flux.device)[None] - shift[:, None]            # (B, L)
    inside = (src >= 0) & (src < L)
    src = src.clamp(0, L - 1)
    f, w = flux.gather(1, src), ivar.gather(1, src)
    return torch.where(inside, f, torch.zeros_like(f)), torch.where(inside, w, torch.zeros_like(w))
