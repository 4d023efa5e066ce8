"""Contrastive, redshift-equivariant self-supervision for spectra on the log-λ grid (no labels).

Two *views* of each spectrum differ only as two observations of the same galaxy could: another
noise realisation drawn from its inverse variance (the view's ivar is lowered to match) and
other lost pixels (random spans set to ivar 0). An NT-Xent loss (SimCLR; lightly's
``NTXentLoss``) on a projection of the pooled embeddings pulls the two views together and pushes
the other spectra of the batch away. Nothing in these views moves the spectrum in wavelength, so
the embedding is free to keep *where* the lines and breaks are.

The **equivariance** term makes it keep that explicitly: a third view is redshifted by a random
``Δ = ln(1 + δ)`` — on the log-λ grid a shift by whole bins (the flux density is kept: the ``1 +
δ`` factor, at most a few per cent, is removed by the per-spectrum standardization) — and a linear
read-out ``r`` of the pooled embedding must satisfy ``r(shifted) - r(original) = Δ /
shift_scale``. So one direction of the embedding measures log(1 + z) up to a constant per galaxy
type: the self-supervised analogue of a redshift, learnt from the spectrum's own shifts (as
spender re-redshifts spectra).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from galclip.augment import calibration_view, noise_view, shift_view, span_dropout
from galclip.config import ConfigError
from galclip.train.pretrain_module import PretrainModule, build_model_encoder
from galclip.train.simclr import ProjectionHeadConfig

if TYPE_CHECKING:
    from galclip.train.schema import TrainConfig


class SpectrumContrastiveObjective(nn.Module):
    """NT-Xent between two views + the redshift-equivariance term (weights from the config).

    ``cfg`` keys: ``temperature``, ``proj_dim``, ``proj_hidden``, ``noise_max``, ``n_spans``,
    ``span_len`` (log-λ bins), ``equivariance_weight``, ``max_shift`` (bins), ``shift_scale``
    (in ln(1+z); the read-out's unit).
    """

    def __init__(self, embed_dim: int, cfg: dict, bin_dlnlam: float):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.cfg, self.bin_dlnlam = dict(cfg), float(bin_dlnlam)
        self.projection = SimCLRProjectionHead(embed_dim, cfg["proj_hidden"], cfg["proj_dim"])
        self.readout = nn.Linear(embed_dim, 1)
        self.ntxent = NTXentLoss(temperature=cfg["temperature"], gather_distributed=True)

    def views(self, flux: torch.Tensor, ivar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, w = calibration_view(flux, ivar, self.cfg["calib_rms"])
        f, w = noise_view(f, w, self.cfg["noise_max"])
        return f, span_dropout(w, self.cfg["n_spans"], self.cfg["span_len"])

    def forward(self, encode, flux: torch.Tensor, ivar: torch.Tensor) -> dict[str, torch.Tensor]:
        """``encode(flux, ivar) -> {"pooled": ...}`` on the log-λ grid; returns the loss terms."""
        c = self.cfg
        B = flux.shape[0]
        views = [self.views(flux, ivar) for _ in range(2)]
        if c["equivariance_weight"] > 0:
            shift = torch.randint(-c["max_shift"], c["max_shift"] + 1, (B,), device=flux.device)
            views.append(self.views(*shift_view(flux, ivar, shift)))
        pooled = encode(torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views]))["pooled"]
        p = pooled.float().split(B)
        contrast = self.ntxent(self.projection(p[0]), self.projection(p[1]))
        out = {"contrastive": contrast}
        loss = contrast
        if c["equivariance_weight"] > 0:
            target = shift.float() * self.bin_dlnlam / c["shift_scale"]
            pred = (self.readout(p[2]) - self.readout(p[0]))[:, 0]
            equi = F.smooth_l1_loss(pred, target)
            out["equivariance"] = equi
            loss = loss + c["equivariance_weight"] * equi
        out["loss"] = loss
        return out


def bin_width_lnlam(encoder) -> float:
    """Width of one log-λ bin of a conv spectrum encoder, in ln λ (its own ``n_pixels`` grid)."""
    from galclip.models.spectrum_encoder import log_grid_span

    lo, hi = log_grid_span(encoder.cfg.n_pixels)
    return (hi - lo) / encoder.cfg.log_bins


@dataclass
class SpectrumViews:
    noise_max: float = 1.0           # extra noise drawn from the ivar, up to this many sigma
    n_spans: int = 4                 # lost spans (ivar 0) per view
    span_len: int = 30               # log-λ bins per lost span
    calib_rms: float = 0.0           # > 0: a smooth multiplicative change of shape of this rms per view


@dataclass
class ContrastiveLoss:
    temperature: float = 0.1         # NT-Xent
    equivariance_weight: float = 0.0  # > 0: the redshift-equivariance term (a third, shifted view)
    max_shift: int = 100             # log-λ bins of that shift
    shift_scale: float = 0.05        # the read-out's unit, in ln(1+z)


@dataclass
class ContrastiveObjective:
    """``objective`` of ``contrastive``: the views, the projection head and the loss."""

    name: str = "contrastive"
    views: SpectrumViews = field(default_factory=SpectrumViews)
    heads: ProjectionHeadConfig = field(default_factory=ProjectionHeadConfig)
    loss: ContrastiveLoss = field(default_factory=ContrastiveLoss)


def objective_settings(objective: ContrastiveObjective) -> dict:
    """The flat settings of :class:`SpectrumContrastiveObjective` from a run's ``objective`` section."""
    v, h, lo = objective.views, objective.heads, objective.loss
    return {"temperature": lo.temperature, "proj_dim": h.output_dim, "proj_hidden": h.hidden_dim,
            "noise_max": v.noise_max, "n_spans": v.n_spans, "span_len": v.span_len,
            "calib_rms": v.calib_rms,
            "equivariance_weight": lo.equivariance_weight, "max_shift": lo.max_shift,
            "shift_scale": lo.shift_scale}


class SpectrumContrastiveModule(PretrainModule):
    """Lightning module of the contrastive + equivariance objective for a conv spectrum encoder."""

    MODEL = "spectrum-conv-nano"
    Objective = ContrastiveObjective
    obj: ContrastiveObjective

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.encoder = build_model_encoder(cfg)
        if not hasattr(self.encoder, "forward_rebinned"):
            raise ConfigError("config field 'model': the contrastive spectrum objective needs a "
                              "log-λ conv encoder (arch: conv, e.g. spectrum-conv-nano)")
        self.objective = SpectrumContrastiveObjective(self.encoder.embed_dim, objective_settings(self.obj),
                                                      bin_width_lnlam(self.encoder))

    def trainable(self) -> list[nn.Module]:
        return [self]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        flux, ivar = batch["spectrum_flux"], batch["spectrum_ivar"]
        keep = torch.isfinite(flux).any(1)                              # rows without a spectrum
        if int(keep.sum()) < 2:
            return None
        with torch.no_grad():
            f, w = self.encoder.rebin(flux[keep], ivar[keep])
        losses = self.objective(self.encoder.forward_rebinned, f, w)
        self.log_losses(losses, batch_size=f.shape[0])
        return losses["loss"]
