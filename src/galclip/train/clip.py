"""The CLIP objective of alignment: symmetric InfoNCE between image and spectrum embeddings.

As AstroCLIP (Parker et al. 2024, sec. 3.3) the pretrained backbones are frozen by default and
only the cross-attention heads (and the temperature) learn; ``optim.freeze_backbones=false``
fine-tunes them too with a lower learning rate that decays layer by layer towards the input
(layer-wise lr decay, Clark et al. 2020; BEiT, Bao et al. 2022). Unlike AstroCLIP, negatives span
the global batch under DDP (embeddings gathered with gradients, :mod:`galclip.train.distributed`)
and the temperature trains. The loss itself is the pure function
:func:`galclip.train.losses.clip_loss`; validation scores retrieval in a pool of held-out galaxies.

Which parameters train is decided in one place, :func:`choose_trainable`; their learning rates
in :func:`lr_scale`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch

from galclip.augment import apply_dihedral, dihedral_params, ivar_noise, random_crops
from galclip.config import ConfigError, section_fields
from galclip.models.clip import GalaxyCLIP, frozen_modalities
from galclip.retrieval_metrics import retrieval_metrics
from galclip.train.distributed import gather_no_grad, gather_with_grad
from galclip.train.feature_cache import FeatureCache
from galclip.train.losses import clip_loss, neighbourhood_loss
from galclip.train.optim import adamw, param_groups

if TYPE_CHECKING:
    from galclip.train.schema import AlignOptim, TrainConfig

ENCODERS = ("image_encoder", "spectrum_encoder")


def build_clip(cfg: TrainConfig) -> GalaxyCLIP:
    """Encoders from pretrained checkpoints (or presets, randomly initialized) + new heads."""
    from galclip.models import create_encoder, load_encoder

    m = section_fields(cfg.model)
    encoders = []
    for modality in ("image", "spectrum"):
        ckpt, preset = m.pop(f"{modality}_checkpoint"), m.pop(f"{modality}_encoder")
        enc = load_encoder(ckpt) if ckpt else create_encoder(preset)
        if enc.modality != modality:
            raise ConfigError(f"model.{modality}_checkpoint: {ckpt} holds a {enc.modality} encoder")
        encoders.append(enc)
    return GalaxyCLIP(*encoders, **m)


def choose_trainable(model: GalaxyCLIP, optim: AlignOptim) -> None:
    """Set ``requires_grad``: the heads and temperature always train; a backbone only when
    :func:`frozen_modalities` leaves it out (frozen ones get no gradient and no optimizer state)."""
    for m in frozen_modalities(optim.freeze_backbones, optim.finetune):
        getattr(model, f"{m}_encoder").requires_grad_(False)


def layer_id(name: str, depth: int) -> int:
    """0 for embeddings, i + 1 for transformer block i, depth + 1 for what follows the blocks."""
    match = re.search(r"(?:^|\.)blocks\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    if re.search(r"embed|cls_token|reg_token|mask_token", name):
        return 0
    return depth + 1


def lr_scale(model: GalaxyCLIP, optim: AlignOptim) -> Callable[[str], float]:
    """Learning-rate factor by parameter name: 1 for heads and temperature; for backbone
    parameters ``backbone_lr_scale * layer_decay ** (depth + 1 - layer)`` (layer-wise decay)."""
    depths = {f"{n}.": 1 + max([layer_id(p, 0) - 1 for p, _ in getattr(model, n).named_parameters()] + [0])
              for n in ENCODERS}
    scale, decay = float(optim.backbone_lr_scale), float(optim.layer_decay)

    def factor(name: str) -> float:
        for prefix, depth in depths.items():
            if name.startswith(prefix):
                return scale * decay ** (depth + 1 - layer_id(name[len(prefix):], depth))
        return 1.0
    return factor


def clip_param_groups(model: GalaxyCLIP, optim: AlignOptim) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters, with layer-wise lr decay in the backbones."""
    return param_groups(model.named_parameters(), lr=float(optim.lr),
                        weight_decay=float(optim.weight_decay), lr_scale=lr_scale(model, optim))


@dataclass
class PairViews:
    """The alignment's views of each pair."""

    image_dihedral: bool = True        # random 90 degree rotations and flips of each cutout
    image_shift: int = 0               # +-px jitter of the cutout centre (fine-tuned image)
    spectrum_noise: float = 0.0        # extra Gaussian noise, sigma = value / sqrt(ivar)


@dataclass
class CLIPObjective:
    """``objective`` of ``clip``: views, validation pool, backbone-feature cache, neighbourhood term."""

    name: str = "clip"
    augment: PairViews = field(default_factory=PairViews)
    pool_size: int = 1000              # validation retrieval pool (chance median rank = pool / 2)
    cache_backbone_features: bool = False  # frozen backbones: keep their outputs per galaxy/view
    cache_max_gb: float = 4.0          # memory cap of that cache
    neighbourhood_weight: float = 0.0  # > 0: keep the frozen spectrum backbone's neighbourhoods
    neighbourhood_temperature: float = 0.1


class CLIPModule(L.LightningModule):
    """Contrastive training step, retrieval validation, optimizer groups of a GalaxyCLIP."""

    MODEL = None  # the model section holds two encoders and the CLIP fields (schema._align_model)
    Objective = CLIPObjective

    def __init__(self, cfg: TrainConfig, model: GalaxyCLIP | None = None):
        super().__init__()
        self.cfg, self.obj = cfg, cfg.objective
        self.model = build_clip(cfg) if model is None else model
        choose_trainable(self.model, cfg.optim)
        self.frozen = frozen_modalities(cfg.optim.freeze_backbones, cfg.optim.finetune)
        self.neighbourhood = float(self.obj.neighbourhood_weight)
        self.neighbourhood_t = float(self.obj.neighbourhood_temperature)
        if self.neighbourhood and "spectrum" not in self.frozen:
            raise ConfigError("objective.neighbourhood_weight > 0 keeps the frozen spectrum backbone's "
                              "neighbourhoods: it needs the spectrum backbone frozen")
        cached_image = "image" in self.frozen and self.obj.cache_backbone_features
        if self.obj.augment.image_shift and cached_image:
            raise ConfigError("objective.augment.image_shift jitters every view anew: with a frozen, "
                              "cached image backbone set it to 0 (or fine-tune the image backbone)")
        self._val: list[dict[str, torch.Tensor]] = []
        # frozen backbones in eval mode map one view to one output: cache it (the heads then
        # dominate an epoch's cost); fine-tuned ones change every step and are never cached
        self.cache = None
        if self.obj.cache_backbone_features:
            if not self.frozen:
                raise ConfigError("objective.cache_backbone_features needs optim.freeze_backbones=true "
                                  "(fine-tuned backbones change their outputs every step)")
            self.cache = FeatureCache(float(self.obj.cache_max_gb) * 2**30)

    def encoder(self, modality: str) -> torch.nn.Module:
        return getattr(self.model, f"{modality}_encoder")

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.frozen:  # frozen backbones stay in eval mode (no dropout, fixed features)
            self.encoder(m).eval()
        return self

    def _features(self, modality: str, keys: list, inputs: tuple[torch.Tensor, ...]
                  ) -> dict[str, torch.Tensor]:
        """Backbone outputs of one modality; from the cache when that backbone is frozen."""
        run = self.encoder(modality)
        if self.cache is None or modality not in self.frozen:
            return run(*inputs)
        return self.cache.get(keys, lambda m: run(*(x[m] for x in inputs)), inputs[0].device)

    def _embed(self, batch: Mapping[str, torch.Tensor], augment: bool) -> dict[str, torch.Tensor]:
        images, flux, ivar = batch["image"], batch["spectrum_flux"], batch["spectrum_ivar"]
        n, aug = images.shape[0], self.obj.augment
        if augment and aug.image_dihedral:
            k, flip = (t.tolist() for t in dihedral_params(n))
        else:
            k, flip = [0] * n, [False] * n
        shift = int(aug.image_shift)
        if augment and shift:  # a jittered view is new every time (never cached, see __init__)
            # crops keep at least the encoder's input size; the shift is clipped to stay inside
            need = int(getattr(getattr(self.encoder("image"), "cfg", None), "img_size", 0))
            images = random_crops(images, max(images.shape[-1] - 2 * shift, need), shift)
        noise = float(aug.spectrum_noise) if augment else 0.0
        ids = batch["object_id"].tolist()
        img = self._features("image", [("image", i, r, f) for i, r, f in zip(ids, k, flip, strict=True)],
                             (apply_dihedral(images, k, flip),))
        if noise > 0:  # noisy spectra are new views every time: not cached
            spec = self.encoder("spectrum")(ivar_noise(flux, ivar, noise), ivar)
        else:
            spec = self._features("spectrum", [("spectrum", i) for i in ids], (flux, ivar))
        out = {"image_embedding": self.model.project_image(img),
               "spectrum_embedding": self.model.project_spectrum(spec),
               "logit_scale": self.model.logit_scale()}
        if self.neighbourhood and augment:
            out["spectrum_reference"] = spec["pooled"]  # the frozen backbone's own embedding
        return out

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._embed(batch, augment=True)
        losses = clip_loss(gather_with_grad(out["image_embedding"]),
                           gather_with_grad(out["spectrum_embedding"]), out["logit_scale"])
        if self.neighbourhood:
            term = neighbourhood_loss(out["spectrum_embedding"], out["spectrum_reference"],
                                      self.neighbourhood_t)
            losses.update({k: self.neighbourhood * v for k, v in term.items()})
            self.log("train/neighbourhood_loss", term["neighbourhood_loss"].detach())
        loss = sum(losses.values())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/logit_scale", out["logit_scale"].detach(), prog_bar=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        out = self._embed(batch, augment=False)
        if len(batch["object_id"]) > 1:
            loss = clip_loss(out["image_embedding"], out["spectrum_embedding"], out["logit_scale"])
            self.log("val/loss", sum(loss.values()), prog_bar=True, sync_dist=True,
                     batch_size=len(batch["object_id"]))
        self._val.append({"object_id": batch["object_id"], "image": out["image_embedding"].float(),
                          "spectrum": out["spectrum_embedding"].float()})

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        parts = {k: gather_no_grad(torch.cat([v[k] for v in self._val])) for k in self._val[0]}
        self._val.clear()
        _, first = np.unique(parts["object_id"].cpu().numpy(), return_index=True)  # DDP padding
        if len(first) < 2:
            return
        metrics = retrieval_metrics(parts["image"][first], parts["spectrum"][first],
                                    pool_size=int(self.obj.pool_size))
        for key, value in metrics.items():
            shown = key.endswith(("median_rank", "R@1"))
            # every rank holds the same gathered metrics, so the DDP mean is the value itself
            self.log(f"val/{key}", float(value), prog_bar=shown, sync_dist=True)

    def configure_optimizers(self):
        o = self.cfg.optim
        total = int(self.trainer.estimated_stepping_batches)
        warmup = min(int(o.warmup_steps), max(1, total // 10))  # short runs: a tenth of the run
        return adamw(clip_param_groups(self.model, o), o, warmup=warmup, total=total)
