"""Self-supervised pretraining of one encoder: config, Lightning trainer, resume, export.

``run_pretrain("image" | "spectrum", data_dir, out_dir, config, overrides)`` is what
``galclip pretrain`` calls. The config has three layers (defaults below -> a YAML file or a named
preset in ``galclip/configs/pretrain/`` -> dotted overrides); the ``encoder`` section starts from
the named encoder preset, so ``encoder.depth=6`` works. The run folder holds::

    config.yaml            the resolved config (a rerun with a different config is refused)
    checkpoints/last.ckpt  Lightning checkpoint, rewritten every ``checkpoint_every_n_steps``
    logs/version_N/        CSV logs of every loss term, one folder per attempt (and resume)
    tensorboard/           the same for TensorBoard, if it is installed
    encoder.safetensors    the pretrained encoder (``galclip.models.load_encoder``)

Rerunning the same command after a kill resumes from ``last.ckpt`` at its saved step.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from galclip.config import (
    ConfigError,
    deep_merge,
    load_config,
    parse_override,
    preset_or_file,
    read_yaml,
    save_config,
)

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "pretrain"
_COMMON: dict[str, Any] = {
    "seed": 0,
    "objective": None,           # one of OBJECTIVES[modality]; None: the first (AstroCLIP's)
    "encoder": {"name": None},   # an encoder preset; its fields can be overridden here
    "data": {"split": "train", "batch_size": 32, "num_workers": 0, "max_rows": None},
    "optim": {"lr": 5e-4, "min_lr": 1e-6, "warmup_steps": 100, "weight_decay": 0.04,
              "weight_decay_end": 0.04, "betas": [0.9, 0.999], "grad_clip": 3.0},
    "trainer": {"max_steps": 1000, "accelerator": "auto", "devices": 1, "num_nodes": 1,
                "strategy": "auto", "precision": "auto", "log_every_n_steps": 10,
                "checkpoint_every_n_steps": 100, "progress_bar": True},
}

#: Each modality's objectives and the config sections each reads (beside ``_COMMON``); the first
#: one is the default. ``dino`` and ``masked`` are AstroCLIP's (the published GPU presets);
#: ``simclr`` and ``contrastive`` are the small-data recipe of the CPU presets (issue 13).
OBJECTIVES: dict[str, dict[str, dict[str, Any]]] = {
    "image": {
        "dino": {
            "encoder": {"name": "image-nano"},
            "crops": {"n_global": 2, "global_size": 144, "n_local": 4, "local_size": 60,
                      "local_max_offset": 30},
            "augment": {"rot90_flip": True, "max_shift": 4, "psf_sigma_max": 1.0, "noise_max": 1.0},
            "heads": {"hidden_dim": 2048, "bottleneck_dim": 256, "output_dim": 65536,
                      "separate_ibot_head": True},
            "loss": {"dino_weight": 1.0, "ibot_weight": 1.0, "koleo_weight": 0.1, "student_temp": 0.1,
                     "teacher_temp": 0.07, "warmup_teacher_temp": 0.04,
                     "warmup_teacher_temp_steps": 300, "center_momentum": 0.9},
            "ibot": {"mask_probability": 0.5, "mask_ratio_min": 0.1, "mask_ratio_max": 0.5},
            "ema": {"momentum_start": 0.992, "momentum_end": 1.0},
        },
        "simclr": {
            "encoder": {"name": "image-conv-nano"},
            # Stein et al. (2021): symmetries, jitter of up to max_shift px, PSF blur, extra noise
            "augment": {"rot90_flip": True, "max_shift": 7, "psf_sigma_max": 1.0, "noise_max": 1.0},
            "heads": {"hidden_dim": 512, "output_dim": 128},
            "loss": {"temperature": 0.2},
        },
    },
    "spectrum": {
        "masked": {
            "encoder": {"name": "spectrum-nano"},
            "mask": {"n_spans": 6, "span_len": 50},
            "loss": {"ivar_weighting": False},
        },
        "contrastive": {
            "encoder": {"name": "spectrum-conv-nano"},
            # galclip.train.spectrum_contrastive: views and the redshift-equivariance term
            "views": {"noise_max": 1.0, "n_spans": 4, "span_len": 30},
            "heads": {"hidden_dim": 512, "output_dim": 128},
            "loss": {"temperature": 0.1, "equivariance_weight": 0.0, "max_shift": 100,
                     "shift_scale": 0.05},
        },
    },
}
MODALITIES = tuple(OBJECTIVES)


def objective_defaults(modality: str, objective: str | None) -> dict[str, Any]:
    """``_COMMON`` merged with the sections of one objective (``None``: the modality's default)."""
    names = list(OBJECTIVES[modality])
    objective = objective or names[0]
    if objective not in OBJECTIVES[modality]:
        raise ConfigError(f"config field 'objective': {objective!r} is not a {modality} objective; "
                          f"choose from {names}")
    return deep_merge({**_COMMON, "objective": objective}, OBJECTIVES[modality][objective], strict=False)


def list_pretrain_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _config_path(config: str | Path | None) -> Path | None:
    """A YAML path, or the name of a packaged preset (``image-cpu`` ...)."""
    return preset_or_file(config, PRESET_DIR)


def _encoder_defaults(modality: str, name: str, where: str) -> dict[str, Any]:
    from galclip.models.registry import _classes, encoder_config

    preset = encoder_config(name)
    if preset["modality"] != modality:
        raise ConfigError(f"{where}: encoder.name {name!r} is a {preset['modality']} encoder, "
                          f"but this is {modality} pretraining")
    return {"name": name, **asdict(_classes(modality, preset.get("arch"))[1](**preset))}


def pretrain_config(modality: str, config: str | Path | None = None,
                    overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved config: defaults -> file/preset -> overrides (unknown keys are errors)."""
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose from {MODALITIES}")
    path = _config_path(config)
    raw = read_yaml(path) if path else {}
    for text in overrides:
        raw = deep_merge(raw, parse_override(text), strict=False)
    defaults = copy.deepcopy(objective_defaults(modality, raw.get("objective")))
    name = (raw.get("encoder") or {}).get("name") or defaults["encoder"]["name"]
    defaults["encoder"] = _encoder_defaults(modality, name, str(path or "config"))
    return load_config(defaults, path, overrides)


def build_module(modality: str, cfg: dict[str, Any]):
    """The LightningModule of the config's objective."""
    objective = cfg["objective"]
    if (modality, objective) == ("image", "dino"):
        from galclip.train.image_pretrain import ImagePretrainModule as M
    elif (modality, objective) == ("image", "simclr"):
        from galclip.train.image_simclr import ImageSimCLRModule as M
    elif (modality, objective) == ("spectrum", "masked"):
        from galclip.train.spectrum_pretrain import SpectrumPretrainModule as M
    elif (modality, objective) == ("spectrum", "contrastive"):
        from galclip.train.spectrum_contrastive import SpectrumContrastiveModule as M
    else:
        raise ConfigError(f"no {modality} pretraining objective {objective!r}")
    return M(cfg)


def _precision(tr: dict[str, Any]) -> str:
    """``auto``: bf16 autocast on a GPU, fp32 on the CPU."""
    if tr["precision"] != "auto":
        return str(tr["precision"])
    import torch

    gpu = tr["accelerator"] in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu else "32-true"


def _loggers(out: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    # each attempt (first run, each resume) logs to its own logs/version_N: nothing is overwritten
    loggers = [CSVLogger(out, name="logs")]
    try:
        import tensorboard  # noqa: F401
        loggers.append(TensorBoardLogger(out, name="tensorboard"))
    except ImportError:
        pass
    return loggers


def build_trainer(cfg: dict[str, Any], out: Path, callbacks: Sequence[Any] = ()):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

    tr = cfg["trainer"]
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, save_top_k=0,
                           every_n_train_steps=tr["checkpoint_every_n_steps"])
    cbs = [ckpt, *callbacks] + ([TQDMProgressBar(refresh_rate=max(1, tr["log_every_n_steps"]))]
                                if tr["progress_bar"] else [])
    return L.Trainer(max_steps=tr["max_steps"], accelerator=tr["accelerator"], devices=tr["devices"],
                     num_nodes=tr["num_nodes"], strategy=tr["strategy"], precision=_precision(tr),
                     gradient_clip_val=cfg["optim"]["grad_clip"] or None,
                     log_every_n_steps=tr["log_every_n_steps"], logger=_loggers(out), callbacks=cbs,
                     enable_progress_bar=bool(tr["progress_bar"]), enable_model_summary=False,
                     default_root_dir=out, max_epochs=-1)


def _check_previous_run(out: Path, cfg: dict[str, Any]) -> None:
    saved = out / "config.yaml"
    if saved.exists():
        old = read_yaml(saved)
        if old != cfg:
            diff = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
            raise ConfigError(f"{saved}: this run folder holds a run with a different config "
                              f"(sections {diff} differ); use a new --out or the same config")


def run_pretrain(modality: str, data_dir: str | Path, out_dir: str | Path,
                 config: str | Path | None = None, overrides: Sequence[str] = (),
                 callbacks: Sequence[Any] = ()) -> Path:
    """Resolve the config, save it in the run folder, pretrain (or resume); returns the path of
    ``encoder.safetensors``."""
    cfg = pretrain_config(modality, config, overrides)
    out = Path(out_dir)
    _check_previous_run(out, cfg)
    save_config(cfg, out / "config.yaml")
    return fit_pretrain(modality, cfg, data_dir, out, callbacks)


def fit_pretrain(modality: str, cfg: dict[str, Any], data_dir: str | Path, out: Path,
                 callbacks: Sequence[Any] = ()) -> Path:
    """Train from a resolved config, resuming from ``out/checkpoints/last.ckpt`` if present."""
    import lightning as L

    from galclip.models import save_encoder
    from galclip.train.pretrain_data import make_loader

    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    loader = make_loader(data_dir, modality, cfg["data"], seed=cfg["seed"])
    module = build_module(modality, cfg)
    trainer = build_trainer(cfg, out, callbacks)
    last = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, loader, ckpt_path=str(last) if last.exists() else None)
    path = out / "encoder.safetensors"
    if trainer.is_global_zero:
        save_encoder(module.export_encoder(), path,
                     extra={"pretrain_steps": str(trainer.global_step), "pretrain_modality": modality})
    return path
