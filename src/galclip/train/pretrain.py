"""Self-supervised pretraining of one encoder (``galclip pretrain image|spectrum``).

The stages ``pretrain-image`` and ``pretrain-spectrum`` of the one training runner
(:mod:`galclip.train.runner`: config, run folder, resume policy, Trainer, export): the objective
(``objective.name``: image ``dino`` | ``simclr``, spectrum ``masked`` | ``contrastive``; each a
module of its own, :mod:`galclip.train.registry`) trains the encoder that ``model``
describes (a preset ``model.name`` whose fields can be overridden, e.g. ``model.depth=6``) on the
``data.split`` rows that hold the modality. The run folder ends with ``encoder.safetensors``,
a self-describing encoder (:func:`galclip.models.load_encoder`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galclip.train.runner import Stage

if TYPE_CHECKING:
    from galclip.train.schema import TrainConfig

MODALITIES = ("image", "spectrum")


def _loaders(modality: str):
    def loaders(cfg: TrainConfig, data_dir: Path):
        from galclip.train.data import make_loader

        return make_loader(data_dir, modality, cfg.data, seed=cfg.seed), None
    return loaders


def _export(modality: str):
    def export(module, path: Path, info: dict[str, Any]) -> None:
        from galclip.models import save_encoder

        save_encoder(module.export_encoder(), path, extra={
            "stage": info["stage"], "pretrain_steps": str(info["global_step"]),
            "pretrain_modality": modality, "run_config": json.dumps(info["run_config"], default=str)})
    return export


# the loader's sampler splits rows by rank (galclip.train.data.EpochSampler): it stays resumable
IMAGE = Stage("pretrain-image", "encoder.safetensors", _loaders("image"), _export("image"),
              distributed_sampler=False)
SPECTRUM = Stage("pretrain-spectrum", "encoder.safetensors", _loaders("spectrum"), _export("spectrum"),
                 distributed_sampler=False)

