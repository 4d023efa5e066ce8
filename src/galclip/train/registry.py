"""The one registry of training: every stage (``pretrain-image``, ``pretrain-spectrum``,
``align``: its :class:`~galclip.train.runner.Stage`) and, per stage, its objectives by name
(their LightningModule classes; the first is the stage's default).

``dino`` and ``masked`` are AstroCLIP's (Parker et al. 2024; the published GPU presets),
``simclr`` and ``contrastive`` the small-data recipe of the CPU presets, ``clip`` the alignment.
Modules are imported when a stage or objective is asked for, so that ``galclip --help`` stays
light.
"""
from __future__ import annotations

from typing import Any

from galclip.config import ConfigError

STAGES = ("pretrain-image", "pretrain-spectrum", "align")


def objectives(stage: str) -> dict[str, type]:
    """Objective name -> LightningModule class of ``stage`` (the first is the default)."""
    from galclip.train import clip, dino, masked_modelling, simclr, spectrum_contrastive

    check_stage(stage)
    return {"pretrain-image": {"dino": dino.ImagePretrainModule, "simclr": simclr.ImageSimCLRModule},
            "pretrain-spectrum": {"masked": masked_modelling.SpectrumPretrainModule,
                                  "contrastive": spectrum_contrastive.SpectrumContrastiveModule},
            "align": {"clip": clip.CLIPModule}}[stage]


def objective_names(stage: str) -> list[str]:
    return list(objectives(stage))


def objective_class(stage: str, name: str | None) -> type:
    """The LightningModule class of objective ``name`` (None: the stage's default)."""
    found = objectives(stage)
    name = name or next(iter(found))
    if name not in found:
        raise ConfigError(f"config field 'objective.name': {name!r} is not a {stage} objective; "
                          f"choose from {list(found)}")
    return found[name]


def stage(name: str) -> Any:
    """The :class:`~galclip.train.runner.Stage` called ``name``."""
    from galclip.train import align, pretrain

    check_stage(name)
    return {"pretrain-image": pretrain.IMAGE, "pretrain-spectrum": pretrain.SPECTRUM,
            "align": align.ALIGN}[name]


def check_stage(name: str) -> None:
    if name not in STAGES:
        raise ConfigError(f"unknown training stage {name!r}; choose from {list(STAGES)}")
