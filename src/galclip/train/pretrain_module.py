"""What the image and spectrum pretraining LightningModules share: optimizer, schedules, export."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch

from galclip.train.optim import configure_adamw, cosine_ramp, set_weight_decay


def encoder_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run config's ``encoder`` section without its preset name: the encoder's own config."""
    return {k: v for k, v in cfg["encoder"].items() if k != "name"}


class PretrainModule(L.LightningModule):
    """Base class: ``self.cfg`` is the resolved run config; subclasses define ``trainable()``."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg  # the resolved config is saved as config.yaml in the run folder

    @property
    def max_steps(self) -> int:
        return int(self.cfg["trainer"]["max_steps"])

    def trainable(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def configure_optimizers(self):
        return configure_adamw(self.trainable(), self.cfg["optim"], self.max_steps)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        o = self.cfg["optim"]
        wd = cosine_ramp(self.global_step, self.max_steps, o["weight_decay"], o["weight_decay_end"])
        set_weight_decay(self.trainer.optimizers[0], wd)

    def log_losses(self, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=batch_size,
                     sync_dist=False)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=batch_size)

    def export_encoder(self):
        """The encoder to keep after pretraining: a fresh module on the CPU with ``self.encoder``'s
        weights (objectives with a teacher, such as DINO, export that instead)."""
        from galclip.models.registry import build_encoder

        enc = build_encoder(self.encoder.config)
        enc.load_state_dict({k: v.detach().float().cpu() for k, v in self.encoder.state_dict().items()})
        return enc.eval()
