"""What the image and spectrum pretraining LightningModules share: optimizer, schedules, export."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from galclip.train.optim import adamw, cosine_ramp, named_parameters, param_groups, set_weight_decay

if TYPE_CHECKING:
    from galclip.train.schema import TrainConfig


def build_model_encoder(cfg: TrainConfig):
    """The encoder that the run config's ``model`` section describes (preset ``name`` + fields)."""
    from galclip.config import section_fields
    from galclip.models.registry import build_encoder

    fields = {k: v for k, v in section_fields(cfg.model).items() if k != "name"}
    return build_encoder(fields, where=f"config field 'model' (preset {cfg.model.name!r})")


class PretrainModule(L.LightningModule):
    """Base class: ``self.cfg`` is the resolved run config, ``self.obj`` its ``objective``
    section; subclasses define ``MODEL`` (their default encoder preset, ``model.name``),
    ``Objective`` (the dataclass of their ``objective`` section, with its defaults),
    ``self.encoder`` and ``trainable()``."""

    MODEL: str
    Objective: type

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg  # the resolved config is saved as config.yaml in the run folder
        self.obj = cfg.objective

    @property
    def max_steps(self) -> int:
        return int(self.cfg.trainer.max_steps)

    def trainable(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def configure_optimizers(self):
        o = self.cfg.optim
        groups = param_groups(named_parameters(self.trainable()), lr=o.lr, weight_decay=o.weight_decay)
        groups.sort(key=lambda g: not g["decayed"])  # decayed first: the order clipping sums norms in
        return adamw(groups, o, warmup=o.warmup_steps, total=self.max_steps, peak=o.lr, end=o.min_lr)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        o = self.cfg.optim
        wd = cosine_ramp(self.global_step, total=self.max_steps, start=o.weight_decay,
                         end=o.weight_decay_end)
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
