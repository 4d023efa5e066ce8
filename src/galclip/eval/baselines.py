"""Supervised baselines, trained on the same training split as the probes (AstroCLIP Table 2).

- **Image**: a timm ResNet18 (He et al. 2016) with 3 input bands, fed the same arcsinh stretch
  and centre crop as galclip's image encoder (:func:`galclip.models.image_encoder.arcsinh_normalize`
  with the :class:`~galclip.models.image_encoder.ImageEncoderConfig` constants), optionally
  average-pooled by ``downsample`` (CPU presets) to save time.
- **Spectrum**: a convolution + attention network in the spirit of AstroCLIP's spectrum
  baseline (Parker et al. 2024, Sec. 5.1): strided 1-D convolutions over the per-spectrum
  standardized flux and its validity mask (the encoder's :func:`standardize`), then transformer
  layers (learned position embeddings, so line positions, i.e. redshift, are seen) and mean
  pooling; the flux level (``asinh(mean)``, ``log(std)``) is appended, since
  stellar mass depends on it.
- **Photometry**: the few-shot MLP on g, r, z asinh magnitudes (Lupton, Gunn & Szalay 1999) of
  the catalogue's total fluxes ``flux_g/r/z`` (measured, with errors, in real catalogues and in
  the simulated one).

The conv baselines may train on augmented views, as the self-supervised stages do; without them
they overfit a few thousand galaxies within a few epochs. Images (``ImageAugment``): a random
symmetry of the square and a crop jittered by up to ``shift`` px (both conserve flux). Spectra
(``SpectrumAugment``): another noise realisation drawn from the ivar and lost spans.

Every network has one linear head for all targets: the standardized properties (masked MSE)
and one softmax per ``morph_*`` question (cross entropy, label < 0 ignored). A seeded 10 % of the
training rows picks the best epoch. Each baseline is a short config section (see the eval presets).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galclip import conventions as C
from galclip.eval.loop import LoopConfig, fit_to_plateau

#: SDSS asinh softening parameters b in nanomaggies (Lupton et al. 1999; SDSS EDR Table 21:
#: b_g = 0.9e-10, b_r = 1.2e-10, b_z = 7.4e-10 maggies).
ASINH_SOFTENING = {"g": 0.09, "r": 0.12, "z": 0.74}
PHOTOMETRY_COLUMNS = tuple(f"flux_{b}" for b in C.BANDS)


def asinh_magnitudes(flux: np.ndarray, softening: np.ndarray) -> np.ndarray:
    """Lupton et al. (1999) eq. 3 in nanomaggies: m = 22.5 - (2.5/ln10)[asinh(f/2b) + ln b]."""
    f, b = np.asarray(flux, dtype=np.float64), np.asarray(softening, dtype=np.float64)
    return C.NANOMAGGY_ZEROPOINT_AB - 2.5 / np.log(10) * (np.arcsinh(f / (2 * b)) + np.log(b))


def photometry_features(labels: dict[str, np.ndarray], softening: dict | None = None) -> np.ndarray:
    """(N, 3) asinh magnitudes g, r, z from the ``flux_g/r/z`` columns."""
    soft = {**ASINH_SOFTENING, **(softening or {})}
    missing = [c for c in PHOTOMETRY_COLUMNS if c not in labels]
    if missing:
        raise KeyError(f"photometry baseline needs column(s) {missing}")
    flux = np.stack([labels[c] for c in PHOTOMETRY_COLUMNS], 1)
    return asinh_magnitudes(flux, np.array([soft[b] for b in C.BANDS]))


# ----------------------------------------------------------------------------- networks
def image_backbone(arch: str = "resnet18") -> nn.Module:
    """A timm CNN with 3 input bands and no classifier (``num_features`` outputs)."""
    import timm

    return timm.create_model(arch, pretrained=False, in_chans=len(C.BANDS), num_classes=0)


class SpectrumConvAttention(nn.Module):
    """(B, 2, L) standardized flux + validity and (B, 2) flux level -> (B, channels + 2)."""

    def __init__(self, channels: int = 64, depth: int = 2, num_heads: int = 4,
                 conv_layers: int = 3, stride: int = 4):
        super().__init__()
        convs, width = [], 2
        for _ in range(conv_layers):  # L = 7781 -> about L / stride**conv_layers tokens
            convs += [nn.Conv1d(width, channels, 2 * stride + 1, stride, stride), nn.GELU()]
            width = channels
        self.conv = nn.Sequential(*convs)
        with torch.no_grad():  # tokens per spectrum on the DESI grid
            n_tokens = self.conv(torch.zeros(1, 2, C.N_WAVE)).shape[-1]
        # learned positions: without them attention + mean pooling would be blind to where a
        # feature sits in wavelength, i.e. to redshift
        self.pos = nn.Parameter(torch.randn(1, n_tokens, channels) * 0.02)
        layer = nn.TransformerEncoderLayer(channels, num_heads, 4 * channels, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.attn = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(channels)
        self.num_features = channels + 2

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        t = self.conv(x).transpose(1, 2) + self.pos  # (B, T, channels)
        pooled = self.norm(self.attn(t)).mean(1)  # (B, channels)
        return torch.cat([pooled, level], dim=1)


class PooledFeatures(nn.Module):
    """The encoders' pooled features behind the ``encode_image``/``encode_spectrum`` surface, so
    the shared inference function embeds them (the unaligned-encoder baseline)."""

    def __init__(self, image_encoder: nn.Module, spectrum_encoder: nn.Module):
        super().__init__()
        self.image_encoder, self.spectrum_encoder = image_encoder, spectrum_encoder

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)["pooled"]  # (B, D_image)

    def encode_spectrum(self, flux: torch.Tensor, ivar: torch.Tensor) -> torch.Tensor:
        return self.spectrum_encoder(flux, ivar)["pooled"]  # (B, D_spectrum)


def preprocess_images(images: np.ndarray, downsample: int = 1) -> dict[str, torch.Tensor]:
    """Nanomaggy cutouts (B, 3, 152, 152) -> the image encoder's stretch and crop, float16."""
    from galclip.models.image_encoder import ImageEncoderConfig, arcsinh_normalize, center_crop

    cfg = ImageEncoderConfig()
    x = arcsinh_normalize(torch.as_tensor(images, dtype=torch.float32),
                          torch.tensor(cfg.band_scale), cfg.arcsinh_divisor)
    x = center_crop(x, cfg.img_size)  # (B, 3, 144, 144)
    if downsample > 1:
        x = F.avg_pool2d(x, downsample)
    return {"x": x.half()}


def preprocess_raw_images(images: np.ndarray, size: int) -> dict[str, torch.Tensor]:
    """Nanomaggy cutouts -> their central ``size`` px, still in nanomaggies (float32): the input
    of :class:`ConvImage`, whose encoder stretches them and measures aperture fluxes itself."""
    from galclip.models.image_encoder import center_crop

    return {"x": center_crop(torch.as_tensor(images, dtype=torch.float32), size).contiguous()}


def preprocess_spectra(flux: np.ndarray, ivar: np.ndarray) -> dict[str, torch.Tensor]:
    """Flux, ivar (B, 7781) -> standardized flux + validity (B, 2, L) and level (B, 2)."""
    from galclip.models.spectrum_encoder import standardize, valid_pixels

    f, iv = torch.as_tensor(flux, dtype=torch.float32), torch.as_tensor(ivar, dtype=torch.float32)
    valid = valid_pixels(f, iv)
    x, mean, std = standardize(f, valid)
    return {"x": torch.stack([x, valid.float()], 1).half(),
            "level": torch.stack([torch.asinh(mean), std.log()], 1)}


# ----------------------------------------------------------------------------- training
@dataclass
class SupervisedConfig(LoopConfig):
    """Training budget of a supervised baseline (:class:`~galclip.eval.loop.LoopConfig`): at most
    ``epochs`` epochs and ``max_seconds`` seconds, stopped earlier once the validation loss has not
    improved for ``patience`` epochs (0: never early); the best validation epoch is kept. AdamW
    with a constant learning rate after a one-epoch linear warm-up, so stopping early leaves no
    schedule half-run; with ``lr_patience`` the rate drops by ``lr_factor`` each time the
    validation loss has been flat for that many epochs (reduce-on-plateau), so a stop means the
    lowered rates no longer help."""

    warmup_epochs: int = 1
    val_fraction: float = 0.1  # of training rows, to pick the best epoch


class ConvImage(nn.Module):
    """A fresh convolutional image encoder as a baseline backbone (the same network as the CPU
    image preset: a timm ResNet + aperture photometry from the pixels, trained with the labels)."""

    def __init__(self, preset: str = "image-conv-nano", **overrides):
        super().__init__()
        from galclip.models import create_encoder

        self.encoder = create_encoder(preset, **overrides)
        self.num_features = self.encoder.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)["pooled"]


@dataclass
class ImageAugment:
    """Training views of raw cutouts ``(B, 3, size + 2 shift, ...)``: a ``size`` px crop whose
    centre is jittered by up to ``shift`` px, then one of the 8 symmetries of the square (all
    conserve flux). Evaluation takes the centre crop."""

    size: int
    shift: int

    def train(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from galclip.augment import random_crops, random_dihedral

        return {"x": random_dihedral(random_crops(inputs["x"], self.size, self.shift))}

    def eval(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from galclip.models.image_encoder import center_crop

        return {"x": center_crop(inputs["x"], self.size)}

    def describe(self) -> str:
        return f"symmetries of the square, ±{self.shift} px jitter"


@dataclass
class SpectrumAugment:
    """Training views of log-λ spectra ``{"flux", "ivar"}``: extra Gaussian noise of up to
    ``noise_max`` times the ivar's σ (the view's ivar lowered to match) and ``n_spans`` spans of
    ``span_len`` bins set to ivar 0. Evaluation sees the spectrum as observed."""

    noise_max: float = 1.0
    n_spans: int = 4
    span_len: int = 30

    def train(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from galclip.augment import noise_view, span_dropout

        f, w = noise_view(inputs["flux"], inputs["ivar"], self.noise_max)
        return {"flux": f, "ivar": span_dropout(w, self.n_spans, self.span_len)}

    def eval(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return inputs

    def describe(self) -> str:
        return f"noise up to {self.noise_max:g}σ and {self.n_spans} lost spans of {self.span_len} bins"


class LogLambdaConv(nn.Module):
    """A fresh convolutional spectrum encoder as a baseline backbone on pre-rebinned log-λ
    flux and ivar (the same network as the CPU encoder preset, trained with the labels)."""

    def __init__(self, preset: str = "spectrum-conv-nano", **overrides):
        super().__init__()
        from galclip.models import create_encoder

        self.encoder = create_encoder(preset, **overrides)
        self.num_features = self.encoder.embed_dim

    def forward(self, flux: torch.Tensor, ivar: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_rebinned(flux, ivar)["pooled"]


@functools.lru_cache(maxsize=4)
def _rebinner(preset: str) -> nn.Module:
    """An encoder of the preset, used only for its (weight-free) log-λ rebinning."""
    from galclip.models import create_encoder

    return create_encoder(preset)


def preprocess_log_spectra(flux: np.ndarray, ivar: np.ndarray, preset: str = "spectrum-conv-nano"
                           ) -> dict[str, torch.Tensor]:
    """Flux, ivar (B, 7781) -> the conv encoder's log-λ flux and ivar (B, log_bins)."""
    with torch.no_grad():
        f, w = _rebinner(preset).rebin(torch.as_tensor(flux, dtype=torch.float32),
                                       torch.as_tensor(ivar, dtype=torch.float32))
    return {"flux": f, "ivar": w}


class MultiTaskNet(nn.Module):
    """A backbone plus one linear head: standardized properties, then morphology logits."""

    def __init__(self, backbone: nn.Module, n_reg: int, n_classes: dict[str, int]):
        super().__init__()
        self.backbone, self.n_reg, self.n_classes = backbone, n_reg, dict(n_classes)
        self.head = nn.Linear(backbone.num_features, n_reg + sum(n_classes.values()))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.backbone(*inputs.values()))

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reg, logits, start = out[:, :self.n_reg], {}, self.n_reg
        for col, n in self.n_classes.items():
            logits[col], start = out[:, start:start + n], start + n
        return reg, logits

    def loss(self, out: torch.Tensor, y: torch.Tensor, morph: dict[str, torch.Tensor]) -> torch.Tensor:
        reg, logits = self.split(out)
        ok = torch.isfinite(y)
        total = F.mse_loss(reg[ok], y[ok]) if ok.any() else out.sum() * 0.0
        for col, lg in logits.items():
            if (morph[col] >= 0).any():
                total = total + F.cross_entropy(lg, morph[col], ignore_index=-1)
        return total


def _take(inputs: dict[str, torch.Tensor], idx: torch.Tensor, device) -> dict[str, torch.Tensor]:
    return {k: v[idx].to(device).float() for k, v in inputs.items()}


class SupervisedBaseline:
    """``SupervisedBaseline(backbone, cfg).fit(inputs, y, morph).predict(inputs)``.

    ``inputs`` is a dict of preprocessed tensors (first axis = rows) passed positionally to the
    backbone; ``y`` (N, P) properties (NaN = missing); ``morph`` {column: (N,) int labels}.
    """

    def __init__(self, backbone: nn.Module, cfg: SupervisedConfig | None = None, device="cpu",
                 augment: ImageAugment | SpectrumAugment | None = None):
        self.backbone, self.cfg, self.device = backbone, cfg or SupervisedConfig(), device
        self.augment = augment

    def _inputs(self, inputs: dict, idx: torch.Tensor, train: bool) -> dict[str, torch.Tensor]:
        x = _take(inputs, idx, self.device)
        if self.augment is None:
            return x
        return self.augment.train(x) if train else self.augment.eval(x)

    def fit(self, inputs: dict, y: np.ndarray, morph: dict[str, np.ndarray]) -> SupervisedBaseline:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.y_mean, self.y_std = np.nanmean(y, 0), np.nanstd(y, 0)
        self.y_std = np.where(self.y_std > 0, self.y_std, 1.0)
        ys = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        ms = {c: torch.as_tensor(np.asarray(v), dtype=torch.long) for c, v in morph.items()}
        n_classes = {c: max(int(v.max()) + 1, 2) for c, v in ms.items()}
        self.net = MultiTaskNet(self.backbone, y.shape[1], n_classes).to(self.device)
        perm = np.random.default_rng(cfg.seed).permutation(len(ys))
        n_val = int(round(cfg.val_fraction * len(ys))) if len(ys) >= 20 else 0
        self._train(inputs, ys, ms, torch.as_tensor(perm[n_val:]), torch.as_tensor(perm[:n_val]))
        return self

    def _train(self, inputs, ys, ms, tr: torch.Tensor, va: torch.Tensor) -> None:
        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            morph = {c: v[idx].to(self.device) for c, v in ms.items()}
            out = self.net(self._inputs(inputs, idx, train=True))
            return self.net.loss(out, ys[idx].to(self.device), morph)

        val = (lambda: self._val_loss(inputs, ys, ms, va)) if len(va) else None
        self.record = fit_to_plateau(self.net, batch_loss, val, tr, self.cfg, progress="baseline epochs")

    def budget(self) -> str:
        """What the baseline was allowed and what it used, for the report."""
        c, r = self.cfg, self.record
        allowed = f"≤ {c.epochs} epochs" + (f", ≤ {c.max_seconds:.0f} s" if c.max_seconds else "")
        stop = f", early stop after {c.patience} flat epochs" if c.patience else ""
        if self.augment is not None:
            stop += f", augmented ({self.augment.describe()})"
        best = f", best epoch {r.best_epoch}" if r.best_epoch else ""
        if c.lr_patience:
            stop += (f", learning rate ×{c.lr_factor:g} after {c.lr_patience} flat epochs "
                     f"({r.lr_drops} drops)")
        if c.precision == "bf16-mixed":
            stop += ", bf16 autocast"
        return (f"{allowed}{stop}; ran {r.epochs_run} epochs in {r.seconds:.0f} s "
                f"({r.stopped}){best}")

    def _forward_all(self, inputs: dict, idx: torch.Tensor | None = None) -> torch.Tensor:
        self.net.eval()
        idx = torch.arange(len(next(iter(inputs.values())))) if idx is None else idx
        with torch.inference_mode():
            return torch.cat([self.net(self._inputs(inputs, b, train=False)).float().cpu()
                              for b in idx.split(self.cfg.batch_size)])

    def _val_loss(self, inputs, ys, ms, va: torch.Tensor) -> float:
        out = self._forward_all(inputs, va)
        return float(self.net.loss(out, ys[va], {c: v[va] for c, v in ms.items()}))

    def predict(self, inputs: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(N, P) properties in physical units and {column: (N,) predicted class}."""
        reg, logits = self.net.split(self._forward_all(inputs))
        y = reg.numpy().astype(np.float64) * self.y_std + self.y_mean
        return y, {c: lg.argmax(1).numpy() for c, lg in logits.items()}
