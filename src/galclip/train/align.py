"""Cross-modal alignment (``galclip align``): train GalaxyCLIP with the symmetric InfoNCE loss.

As AstroCLIP (Parker et al. 2024, sec. 3.3) the pretrained backbones are frozen by default and
only the cross-attention heads (and the temperature) learn; ``train.freeze_backbones=false``
fine-tunes them too with a lower learning rate that decays layer by layer towards the input
(layer-wise lr decay, Clark et al. 2020; BEiT, Bao et al. 2022). Unlike AstroCLIP, negatives span
the global batch under DDP (embeddings gathered with gradients) and the temperature trains.

A run folder holds ``config.yaml`` (resolved config), ``checkpoints/last.ckpt`` (Lightning state
for resuming: rerun the same command after a kill), ``logs/`` (CSV metrics per step/epoch) and
``model.safetensors``, the self-describing model (``galclip.load_model``), rewritten after every
epoch.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from galclip.config import ConfigError, load_config, preset_or_file, read_yaml, save_config
from galclip.eval.retrieval import retrieval_metrics
from galclip.models.clip import CLIP_DEFAULTS, GalaxyCLIP, save_model
from galclip.train.align_data import BlockShuffleSampler, open_pairs, row_group_of_rows, split_rows
from galclip.train.distributed import gather_no_grad, gather_with_grad
from galclip.train.feature_cache import FeatureCache
from galclip.train.losses import clip_loss

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "align"
MODEL_FILE = "model.safetensors"

DEFAULTS: dict[str, Any] = {
    "model": {
        "image_encoder": "image-nano",        # preset used when no image checkpoint is given
        "spectrum_encoder": "spectrum-nano",  # preset used when no spectrum checkpoint is given
        "image_checkpoint": None,             # pretrained encoder file (galclip pretrain)
        "spectrum_checkpoint": None,
        **CLIP_DEFAULTS,
    },
    "train": {
        "epochs": 10,
        "max_steps": -1,              # stop earlier than epochs (-1: no limit)
        "batch_size": 64,             # per device; negatives span all devices
        "lr": 1e-4,                   # heads and temperature
        "weight_decay": 0.05,
        "warmup_steps": 50,           # linear warm-up, then cosine decay to 0
        "freeze_backbones": True,     # AstroCLIP: frozen; False: fine-tune with the two below
        "backbone_lr_scale": 0.1,     # backbone top-layer lr = lr * scale
        "layer_decay": 0.75,          # each layer further down: lr *= layer_decay
        "grad_clip": 1.0,
        "max_train_rows": None,       # use only the first N training rows (scaling studies)
        "num_workers": 0,
        "shuffle_window": 8,          # row groups mixed per shuffle window
        "seed": 0,
        "checkpoint_every_n_steps": 100,
        "cache_backbone_features": False,  # frozen backbones: keep their tokens per galaxy/view
        "cache_max_gb": 4.0,              # memory cap of that cache
    },
    "augment": {
        "image_dihedral": True,       # random 90 degree rotations and flips of each cutout
        "spectrum_noise": 0.0,        # extra Gaussian noise, sigma = value / sqrt(ivar)
    },
    "eval": {
        "pool_size": 1000,            # retrieval pool (chance median rank = pool / 2)
        "max_val_rows": 1000,         # held-out galaxies embedded each epoch
        "batch_size": 128,
    },
    "trainer": {
        "accelerator": "auto",
        "devices": 1,
        "strategy": "auto",           # e.g. ddp
        "precision": "auto",          # bf16-mixed on GPU, 32-true on CPU
        "log_every_n_steps": 10,
    },
}
#: keys that may change when a run is resumed (to extend it)
RESUMABLE_CHANGES = {("train", "epochs"), ("train", "max_steps")}


# ----------------------------------------------------------------------------- config
def resolve_config(config: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """defaults -> preset name or YAML file -> ``key=value`` overrides."""
    return load_config(DEFAULTS, preset_or_file(config, PRESET_DIR), overrides)


def _diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: tuple = ()) -> list[tuple]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            keys += _diff(va, vb, (*prefix, k))
        elif va != vb:
            keys.append((*prefix, k))
    return keys


def check_resume(out_dir: Path, cfg: Mapping[str, Any]) -> Path | None:
    """The checkpoint to resume from, after checking the run's saved config matches ``cfg``."""
    last = out_dir / "checkpoints" / "last.ckpt"
    saved = out_dir / "config.yaml"
    if not last.exists():
        return None
    if saved.exists():
        changed = [k for k in _diff(read_yaml(saved), cfg) if k not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(f"{saved}: the run in {out_dir} was started with a different config "
                              f"({', '.join('.'.join(k) for k in changed)}); use a new --out "
                              f"folder or the same settings to resume")
    return last


# ----------------------------------------------------------------------------- model
def build_clip(cfg: Mapping[str, Any]) -> GalaxyCLIP:
    """Encoders from pretrained checkpoints (or presets, randomly initialized) + new heads."""
    from galclip.models import create_encoder, load_encoder

    m = dict(cfg["model"])
    encoders = []
    for modality in ("image", "spectrum"):
        ckpt, preset = m.pop(f"{modality}_checkpoint"), m.pop(f"{modality}_encoder")
        enc = load_encoder(ckpt) if ckpt else create_encoder(preset)
        if enc.modality != modality:
            raise ConfigError(f"model.{modality}_checkpoint: {ckpt} holds a {enc.modality} encoder")
        encoders.append(enc)
    return GalaxyCLIP(*encoders, **m)


def layer_id(name: str, depth: int) -> int:
    """0 for embeddings, i + 1 for transformer block i, depth + 1 for what follows the blocks."""
    match = re.search(r"(?:^|\.)blocks\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    if re.search(r"embed|cls_token|reg_token|mask_token", name):
        return 0
    return depth + 1


def _no_decay(name: str, p: torch.nn.Parameter) -> bool:
    return p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "query", "log_logit_scale"))


def param_groups(model: GalaxyCLIP, tcfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """AdamW groups: heads at ``lr``; trainable backbone params with layer-wise lr decay.

    Parameters that do not require gradients (frozen backbones) are in no group, so the
    optimizer keeps no state for them.
    """
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    encoders = {"image_encoder.": model.image_encoder, "spectrum_encoder.": model.spectrum_encoder}
    depths = {p: 1 + max([layer_id(n, 0) - 1 for n, _ in e.named_parameters()] + [0])
              for p, e in encoders.items()}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = float(tcfg["lr"])
        for prefix, depth in depths.items():
            if name.startswith(prefix):
                lid = layer_id(name[len(prefix):], depth)
                lr *= float(tcfg["backbone_lr_scale"]) * float(tcfg["layer_decay"]) ** (depth + 1 - lid)
        wd = 0.0 if _no_decay(name, p) else float(tcfg["weight_decay"])
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """lr multiplier: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- augmentation
def dihedral_params(n: int, generator: torch.Generator | None = None) -> tuple[list[int], list[bool]]:
    """Random quarter-turn counts and flips for ``n`` cutouts (8 equally likely views)."""
    k = torch.randint(0, 4, (n,), generator=generator).tolist()
    flip = torch.rand(n, generator=generator).lt(0.5).tolist()
    return k, flip


def apply_dihedral(images: torch.Tensor, k: Sequence[int], flip: Sequence[bool]) -> torch.Tensor:
    """Cutout i ``(C, H, W)`` rotated by ``k[i]`` quarter turns, then mirrored if ``flip[i]``."""
    out = [torch.rot90(img, r, dims=(-2, -1)) for img, r in zip(images, k, strict=True)]
    return torch.stack([img.flip(-1) if f else img for img, f in zip(out, flip, strict=True)])


def random_dihedral(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each cutout ``(B, C, H, W)`` rotated by a random multiple of 90 deg and maybe flipped."""
    return apply_dihedral(images, *dihedral_params(images.shape[0], generator))


def ivar_noise(flux: torch.Tensor, ivar: torch.Tensor, scale: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``flux + scale * N(0, 1/ivar)`` on valid pixels (ivar > 0); bad pixels unchanged."""
    if scale <= 0:
        return flux
    sigma = torch.where(ivar > 0, ivar.clamp_min(1e-30).rsqrt(), torch.zeros_like(ivar))
    noise = torch.randn(flux.shape, generator=generator, device="cpu").to(flux.device)
    return flux + scale * sigma * noise


# ----------------------------------------------------------------------------- Lightning
class AlignModule(L.LightningModule):
    """Lightning wrapper: contrastive training step, retrieval validation, optimizer groups."""

    def __init__(self, model: GalaxyCLIP, cfg: Mapping[str, Any]):
        super().__init__()
        self.model, self.cfg = model, copy.deepcopy(dict(cfg))
        self.frozen = bool(cfg["train"]["freeze_backbones"])
        if self.frozen:
            for enc in (model.image_encoder, model.spectrum_encoder):
                enc.requires_grad_(False)
        self._val: list[dict[str, torch.Tensor]] = []
        self.cache = None
        if cfg["train"]["cache_backbone_features"]:
            if not self.frozen:
                raise ConfigError("train.cache_backbone_features needs train.freeze_backbones=true "
                                  "(fine-tuned backbones change their outputs every step)")
            self.cache = FeatureCache(float(cfg["train"]["cache_max_gb"]) * 2**30)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # frozen backbones stay in eval mode (no dropout, fixed features)
            self.model.image_encoder.eval()
            self.model.spectrum_encoder.eval()
        return self

    def _embed(self, batch: Mapping[str, torch.Tensor], augment: bool) -> dict[str, torch.Tensor]:
        images, flux, ivar = batch["image"], batch["spectrum_flux"], batch["spectrum_ivar"]
        n, aug = images.shape[0], self.cfg["augment"]
        k, flip = dihedral_params(n) if augment and aug["image_dihedral"] else ([0] * n, [False] * n)
        noise = float(aug["spectrum_noise"]) if augment else 0.0
        if self.cache is None:
            flux = ivar_noise(flux, ivar, noise)
            return self.model(apply_dihedral(images, k, flip), flux, ivar)
        ids = batch["object_id"].tolist()
        img = self.cache.get(
            [("image", i, r, f) for i, r, f in zip(ids, k, flip, strict=True)],
            lambda m: self.model.image_encoder(apply_dihedral(images[m], [k[j] for j in m],
                                                              [flip[j] for j in m])), images.device)
        if noise > 0:  # noisy spectra are new views every time: not cached
            spec = self.model.spectrum_encoder(ivar_noise(flux, ivar, noise), ivar)
        else:
            spec = self.cache.get([("spectrum", i) for i in ids],
                                  lambda m: self.model.spectrum_encoder(flux[m], ivar[m]), flux.device)
        return {"image_embedding": self.model.project_image(img),
                "spectrum_embedding": self.model.project_spectrum(spec),
                "logit_scale": self.model.logit_scale()}

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self._embed(batch, augment=True)
        losses = clip_loss(gather_with_grad(out["image_embedding"]),
                           gather_with_grad(out["spectrum_embedding"]), out["logit_scale"])
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
                                    pool_size=int(self.cfg["eval"]["pool_size"]))
        for key, value in metrics.items():
            shown = key.endswith(("median_rank", "R@1"))
            # every rank holds the same gathered metrics, so the DDP mean is the value itself
            self.log(f"val/{key}", float(value), prog_bar=shown, sync_dist=True)

    def configure_optimizers(self):
        tcfg = self.cfg["train"]
        opt = torch.optim.AdamW(param_groups(self.model, tcfg), betas=(0.9, 0.98))
        total = int(self.trainer.estimated_stepping_batches)
        warmup = min(int(tcfg["warmup_steps"]), max(1, total // 10))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class ExportModel(L.Callback):
    """Write the self-describing ``model.safetensors`` after each epoch and at the end."""

    def __init__(self, path: Path):
        self.path, self.start_step = path, 0

    def on_train_start(self, trainer: L.Trainer, module: AlignModule) -> None:
        self.start_step = trainer.global_step  # > 0 when the run was resumed

    def _export(self, trainer: L.Trainer, module: AlignModule) -> None:
        if trainer.is_global_zero:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            save_model(module.model, self.path, extra={
                "epoch": trainer.current_epoch, "global_step": trainer.global_step,
                "resumed_from_step": self.start_step,
                "metrics": metrics, "run_config": module.cfg})

    def on_validation_end(self, trainer: L.Trainer, module: AlignModule) -> None:
        if not trainer.sanity_checking:
            self._export(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: AlignModule) -> None:
        self._export(trainer, module)


# ----------------------------------------------------------------------------- data
def _loaders(cfg: Mapping[str, Any], data_dir: str | Path) -> tuple[DataLoader, DataLoader]:
    ds = open_pairs(data_dir)
    train_rows, val_rows = split_rows(ds, "train"), split_rows(ds, "val")
    if cfg["train"]["max_train_rows"]:
        train_rows = train_rows[: int(cfg["train"]["max_train_rows"])]
    val_rows = val_rows[: int(cfg["eval"]["max_val_rows"])]
    if len(train_rows) < 2 or len(val_rows) < 2:
        raise ValueError(f"{data_dir}: alignment needs at least 2 training and 2 validation "
                         f"galaxies; the splits hold {len(train_rows)} and {len(val_rows)}")
    bs, workers = int(cfg["train"]["batch_size"]), int(cfg["train"]["num_workers"])
    groups = row_group_of_rows(ds)
    sampler = BlockShuffleSampler(train_rows, groups,
                                  int(cfg["train"]["shuffle_window"]), int(cfg["train"]["seed"]))
    train = DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=workers,
                       drop_last=len(train_rows) > bs, persistent_workers=workers > 0)
    val = DataLoader(ds, batch_size=int(cfg["eval"]["batch_size"]), num_workers=workers,
                     sampler=BlockShuffleSampler(val_rows, groups, shuffle=False))
    return train, val


def _trainer(cfg: Mapping[str, Any], out_dir: Path, callbacks: list) -> L.Trainer:
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger

    t = cfg["trainer"]
    precision = t["precision"]
    if precision == "auto":
        precision = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    ckpt = ModelCheckpoint(dirpath=out_dir / "checkpoints", save_last=True, save_top_k=0,
                           every_n_train_steps=int(cfg["train"]["checkpoint_every_n_steps"]),
                           save_on_train_epoch_end=True)
    return L.Trainer(
        default_root_dir=out_dir, max_epochs=int(cfg["train"]["epochs"]),
        max_steps=int(cfg["train"]["max_steps"]), accelerator=t["accelerator"],
        devices=t["devices"], strategy=t["strategy"], precision=precision,
        gradient_clip_val=float(cfg["train"]["grad_clip"]) or None,
        log_every_n_steps=int(t["log_every_n_steps"]), num_sanity_val_steps=0,
        logger=CSVLogger(out_dir, name="logs"),  # a new version_N per (resumed) invocation
        use_distributed_sampler=False,  # BlockShuffleSampler splits rows across ranks itself
        callbacks=[ckpt, TQDMProgressBar(), *callbacks], enable_model_summary=False)


def align(cfg: Mapping[str, Any], data_dir: str | Path, out_dir: str | Path) -> Path:
    """Train a GalaxyCLIP as configured; resumes ``out_dir`` if it holds a run. Returns the model file."""
    out_dir = Path(out_dir)
    resume = check_resume(out_dir, cfg)
    L.seed_everything(int(cfg["train"]["seed"]), workers=True, verbose=False)
    module = AlignModule(build_clip(cfg), cfg)
    train, val = _loaders(cfg, data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    trainer = _trainer(cfg, out_dir, [ExportModel(out_dir / MODEL_FILE)])
    trainer.fit(module, train, val, ckpt_path=str(resume) if resume else None)
    return out_dir / MODEL_FILE
