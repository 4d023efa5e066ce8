"""DINOv2-style self-distillation of the image encoder (Oquab et al. 2023), as AstroDINO.

A student ViT and an exponential-moving-average teacher (momentum on a cosine schedule towards
``momentum_end``) see different augmented views (:mod:`galclip.augment`). Losses, from
lightly's maintained implementations:

- **DINO** (Caron et al. 2021): the student's class-token prototypes on every view match the
  centred, sharpened teacher prototypes of the *other* global views; the teacher temperature
  warms up linearly from ``warmup_teacher_temp``.
- **iBOT** (Zhou et al. 2022): blocks of patches of the student's global views are masked
  (``random_block_mask``) and their prototypes match the teacher's on the unmasked view.
- **KoLeo** (Sablayrolles et al. 2019): spreads the student's class tokens of a batch apart.

The teacher gets no gradient; its backbone is what pretraining exports (as DINOv2).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from galclip.augment import Crops, ImageViews, multi_crop
from galclip.models.registry import build_encoder
from galclip.train.optim import cosine_ramp
from galclip.train.pretrain_module import PretrainModule, build_model_encoder

if TYPE_CHECKING:
    from galclip.train.schema import TrainConfig


@dataclass
class DinoHeads:
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    output_dim: int = 65536            # prototypes
    separate_ibot_head: bool = True    # False: iBOT shares the DINO head


@dataclass
class DinoLoss:
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04  # linear warm-up to teacher_temp over the steps below
    warmup_teacher_temp_steps: int = 300
    center_momentum: float = 0.9


@dataclass
class IBOTMasking:
    mask_probability: float = 0.5      # of a global view having masked patches
    mask_ratio_min: float = 0.1
    mask_ratio_max: float = 0.5


@dataclass
class TeacherEMA:
    momentum_start: float = 0.992      # cosine ramp to momentum_end over the run
    momentum_end: float = 1.0


@dataclass
class DinoObjective:
    """``objective`` of ``dino``: views, heads, loss weights and temperatures, iBOT, teacher EMA."""

    name: str = "dino"
    crops: Crops = field(default_factory=Crops)
    augment: ImageViews = field(default_factory=ImageViews)
    heads: DinoHeads = field(default_factory=DinoHeads)
    loss: DinoLoss = field(default_factory=DinoLoss)
    ibot: IBOTMasking = field(default_factory=IBOTMasking)
    ema: TeacherEMA = field(default_factory=TeacherEMA)


def _head(D: int, h: DinoHeads) -> nn.Module:
    from lightly.models.modules import DINOv2ProjectionHead

    return DINOv2ProjectionHead(D, h.hidden_dim, h.bottleneck_dim, h.output_dim)


def _frozen_copy_of_head(head: nn.Module, D: int, h: DinoHeads) -> nn.Module:
    # weight_norm heads cannot be deep-copied (STACK.md): build afresh and copy the weights
    teacher = _head(D, h)
    teacher.load_state_dict(head.state_dict())
    return teacher.requires_grad_(False)


class ImagePretrainModule(PretrainModule):
    MODEL = "image-nano"
    Objective = DinoObjective
    obj: DinoObjective

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
        from lightly.models.modules import MaskedVisionTransformerTIMM

        self.encoder = build_model_encoder(cfg)
        D, h, lo = self.encoder.embed_dim, self.obj.heads, self.obj.loss
        self.student = MaskedVisionTransformerTIMM(self.encoder.backbone, weight_initialization="skip",
                                                   pos_embed_initialization="skip")
        self.student_dino_head = _head(D, h)
        self.student_ibot_head = _head(D, h) if h.separate_ibot_head else self.student_dino_head
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.teacher_dino_head = _frozen_copy_of_head(self.student_dino_head, D, h)
        self.teacher_ibot_head = (_frozen_copy_of_head(self.student_ibot_head, D, h)
                                  if h.separate_ibot_head else self.teacher_dino_head)
        self.dino_loss = DINOLoss(h.output_dim, teacher_temp=lo.teacher_temp,
                                  student_temp=lo.student_temp, center_momentum=lo.center_momentum)
        self.ibot_loss = IBOTPatchLoss(h.output_dim, teacher_temp=lo.teacher_temp,
                                       student_temp=lo.student_temp,
                                       center_momentum=lo.center_momentum)
        self.koleo_loss = KoLeoLoss()

    def trainable(self) -> list[nn.Module]:
        return [self.student, self.student_dino_head, self.student_ibot_head]

    def train(self, mode: bool = True) -> ImagePretrainModule:
        """The teacher always runs in eval mode (no stochastic depth), as in DINOv2."""
        super().train(mode)
        for m in (self.teacher, self.teacher_dino_head, self.teacher_ibot_head):
            m.train(False)
        return self

    # ---- schedules
    def teacher_temp(self, step: int) -> float:
        lo = self.obj.loss
        t = min(1.0, step / max(1, lo.warmup_teacher_temp_steps))
        return lo.warmup_teacher_temp + t * (lo.teacher_temp - lo.warmup_teacher_temp)

    def momentum(self, step: int) -> float:
        e = self.obj.ema
        return cosine_ramp(step, total=self.max_steps, start=e.momentum_start, end=e.momentum_end)

    # ---- one step
    def block_mask(self, batch: int, grid: int, device) -> torch.Tensor:
        from lightly.models.utils import random_block_mask

        m = self.obj.ibot
        # blocks of >= 4 patches (DINOv2), fewer when a small grid asks for fewer masked patches
        min_block = max(1, min(4, int(grid * grid * m.mask_ratio_min)))
        return random_block_mask((batch, grid, grid), batch_mask_ratio=m.mask_probability,
                                 min_image_mask_ratio=m.mask_ratio_min,
                                 max_image_mask_ratio=m.mask_ratio_max,
                                 min_num_masks_per_block=min_block, device=device)

    def views(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Augmented, normalized global and local views of a batch of physical cutouts."""
        glob, local = multi_crop(images.float(), self.encoder.band_scale, self.obj.crops,
                                 self.obj.augment)
        return [self.encoder.normalize(v) for v in glob], [self.encoder.normalize(v) for v in local]

    def losses(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        glob, local = self.views(images)
        nG, P = len(glob), self.student.vit.num_prefix_tokens
        g = torch.cat(glob)                                             # (nG B, C, 144, 144)
        grid = g.shape[-1] // self.encoder.cfg.patch_size
        mask = self.block_mask(g.shape[0], grid, g.device)              # (nG B, grid, grid)
        tt = self.teacher_temp(self.global_step)
        with torch.no_grad():
            t_tok = self.teacher.encode(g)                              # (nG B, P + grid², D)
            t_cls = self.teacher_dino_head(t_tok[:, 0]).chunk(nG)
            t_patch = self.teacher_ibot_head(t_tok[:, P:][mask.flatten(1)])
        token_mask = F.pad(mask.flatten(1), (P, 0), value=False)        # class token never masked
        s_tok = self.student.encode(g, mask=token_mask)
        s_cls_g = self.student_dino_head(s_tok[:, 0]).chunk(nG)
        s_cls_l = [self.student_dino_head(self.student.encode(v)[:, 0]) for v in local]
        lo = self.obj.loss
        out = {"dino_loss": self.dino_loss(list(t_cls), list(s_cls_g) + s_cls_l, teacher_temp=tt),
               "koleo_loss": sum(self.koleo_loss(c) for c in s_tok[:, 0].chunk(nG)) / nG}
        if mask.any():
            s_patch = self.student_ibot_head(s_tok[:, P:][mask.flatten(1)])
            out["ibot_loss"] = self.ibot_loss(t_patch, s_patch, mask, teacher_temp=tt)
        else:
            out["ibot_loss"] = s_tok.sum() * 0.0
        out["loss"] = (lo.dino_weight * out["dino_loss"] + lo.ibot_weight * out["ibot_loss"]
                       + lo.koleo_weight * out["koleo_loss"])
        return out

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = batch["image"]                                         # (B, bands, 152, 152)
        images = images[torch.isfinite(images).flatten(1).all(1)]       # rows without an image
        if images.shape[0] < 2:
            return None
        losses = self.losses(images)
        self.log_losses(losses, batch_size=images.shape[0])
        self.log("train/momentum", self.momentum(self.global_step))
        self.log("train/teacher_temp", self.teacher_temp(self.global_step))
        return losses["loss"]

    @torch.no_grad()
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        from lightly.models.utils import update_momentum

        m = self.momentum(self.global_step)
        update_momentum(self.student, self.teacher, m)
        update_momentum(self.student_dino_head, self.teacher_dino_head, m)
        if self.student_ibot_head is not self.student_dino_head:
            update_momentum(self.student_ibot_head, self.teacher_ibot_head, m)

    def export_encoder(self):
        """The teacher backbone as a stand-alone image encoder (DINOv2 keeps the teacher)."""
        enc = build_encoder(self.encoder.config)
        state = {k: v.detach().float().cpu() for k, v in self.teacher.vit.state_dict().items()}
        enc.backbone.load_state_dict(state)
        return enc.eval()
