"""GalaxyCLIP: a galaxy's image and spectrum in one embedding space (AstroCLIP, Parker et al. 2024).

Ready-made modality encoders (see ``galclip.models``) are passed in; each gets a
:class:`~galclip.models.heads.ProjectionHead` (cross-attention pooling over all backbone tokens,
then an MLP) to the shared ``embed_dim``; embeddings are L2-normalized. The temperature is
stored as ``log(1/tau)`` (initialized at ``log(1/0.07)``, CLIP), exponentiated and clamped at
``logit_scale_max`` (100) in ``forward``; it is a trained parameter when ``learn_logit_scale``
and otherwise fixed at exactly the configured value.

``save_model``/``load_model`` write and read one self-describing safetensors file whose metadata
holds the CLIP config and both encoders' configs, so the whole model rebuilds from that file.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galclip.config import ConfigError
from galclip.models.heads import ProjectionHead

CHECKPOINT_FORMAT = "galclip-clip"
CHECKPOINT_VERSION = 1


@dataclass
class CLIPConfig:
    """GalaxyCLIP's settings besides its encoders (alignment's ``model`` section holds them)."""

    embed_dim: int = 512             # shared embedding width (AstroCLIP: 1024)
    head_num_heads: int = 4          # heads of the cross-attention pooling
    head_mlp_ratio: float = 4.0      # MLP hidden width = ratio * backbone width
    head_dropout: float = 0.0
    logit_scale_init: float = 1 / 0.07  # 1/temperature at start (CLIP)
    learn_logit_scale: bool = True   # False: the scale stays at logit_scale_init
    logit_scale_max: float = 100.0   # clamp (CLIP)


#: GalaxyCLIP constructor arguments (besides the encoders) and their defaults.
CLIP_DEFAULTS: dict[str, Any] = asdict(CLIPConfig())


def _run_encoder(encoder: nn.Module, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward without building a graph when the whole backbone is frozen."""
    trainable = any(p.requires_grad for p in encoder.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
        return encoder(*inputs)


class GalaxyCLIP(nn.Module):
    """Image and spectrum encoders + projection heads + a (learnable) logit scale."""

    family = "galclip"

    def __init__(self, image_encoder: nn.Module, spectrum_encoder: nn.Module, **kwargs: Any):
        super().__init__()
        unknown = sorted(set(kwargs) - set(CLIP_DEFAULTS))
        if unknown:
            raise ValueError(f"GalaxyCLIP: unknown argument(s) {unknown}; known: {sorted(CLIP_DEFAULTS)}")
        for enc, want in ((image_encoder, "image"), (spectrum_encoder, "spectrum")):
            if getattr(enc, "modality", None) != want:
                raise ValueError(f"GalaxyCLIP: the {want} encoder has modality "
                                 f"{getattr(enc, 'modality', None)!r}, expected {want!r}")
        self.hparams: dict[str, Any] = {**CLIP_DEFAULTS, **kwargs}
        h = self.hparams
        if not 0 < h["logit_scale_init"] <= h["logit_scale_max"]:
            raise ValueError(f"GalaxyCLIP: logit_scale_init={h['logit_scale_init']} must lie in "
                             f"(0, logit_scale_max={h['logit_scale_max']}]")
        self.image_encoder, self.spectrum_encoder = image_encoder, spectrum_encoder
        head = dict(embed_dim=int(h["embed_dim"]), num_heads=int(h["head_num_heads"]),
                    mlp_ratio=float(h["head_mlp_ratio"]), dropout=float(h["head_dropout"]))
        self.image_head = ProjectionHead(image_encoder.embed_dim, **head)
        self.spectrum_head = ProjectionHead(spectrum_encoder.embed_dim, **head)
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(h["logit_scale_init"])),
                                            requires_grad=bool(h["learn_logit_scale"]))

    @property
    def embed_dim(self) -> int:
        return int(self.hparams["embed_dim"])

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the model: CLIP arguments and both encoders' configs."""
        return {**self.hparams, "image_encoder": self.image_encoder.config,
                "spectrum_encoder": self.spectrum_encoder.config}

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.clamp(max=math.log(self.hparams["logit_scale_max"])).exp()

    def _tensor(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(x if torch.is_tensor(x) else np.require(x, np.float32, "W"),
                               dtype=torch.float32, device=self.log_logit_scale.device)

    def project_image(self, features: Mapping[str, torch.Tensor], normalize: bool = True) -> torch.Tensor:
        """Image backbone outputs (``tokens``, optional ``padding_mask``) -> ``(B, embed_dim)``."""
        z = self.image_head(features["tokens"], features.get("padding_mask"))  # (B, E)
        return F.normalize(z, dim=-1) if normalize else z

    def project_spectrum(self, features: Mapping[str, torch.Tensor], normalize: bool = True) -> torch.Tensor:
        """Spectrum backbone outputs (``tokens``, ``padding_mask``) -> ``(B, embed_dim)``."""
        z = self.spectrum_head(features["tokens"], features.get("padding_mask"))  # (B, E)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_image(self, images: Any, normalize: bool = True) -> torch.Tensor:
        """Physical cutouts ``(B, 3, H, W)`` in nanomaggies -> ``(B, embed_dim)``."""
        return self.project_image(_run_encoder(self.image_encoder, self._tensor(images)), normalize)

    def encode_spectrum(self, flux: Any, ivar: Any, normalize: bool = True) -> torch.Tensor:
        """DESI-grid ``flux`` and ``ivar`` ``(B, 7781)`` -> ``(B, embed_dim)``."""
        out = _run_encoder(self.spectrum_encoder, self._tensor(flux), self._tensor(ivar))
        return self.project_spectrum(out, normalize)

    def forward(self, images: Any, flux: Any, ivar: Any) -> dict[str, torch.Tensor]:
        return {"image_embedding": self.encode_image(images),
                "spectrum_embedding": self.encode_spectrum(flux, ivar),
                "logit_scale": self.logit_scale()}


# ----------------------------------------------------------------------------- checkpoints
def save_model(model: GalaxyCLIP, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as one safetensors file (atomically) with its config in the metadata."""
    from galclip import __version__
    from galclip.models.checkpoint import write_safetensors

    meta = {"format": CHECKPOINT_FORMAT, "format_version": str(CHECKPOINT_VERSION),
            "galclip_version": __version__, "config": json.dumps(model.config),
            "extra": json.dumps(dict(extra or {}), default=str)}
    return write_safetensors(path, model, meta)


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """The decoded metadata of a GalaxyCLIP checkpoint (``config``, ``extra``, versions)."""
    from galclip.models import astroclip_checkpoint as A
    from galclip.models.checkpoint import read_metadata

    path = Path(path)
    if path.is_file() and A.file_kind(path) == "torch":  # AstroCLIP's released Lightning file
        return A.read_astroclip_metadata(path)
    meta = read_metadata(path, what="model checkpoint")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: metadata field 'format' is {meta.get('format')!r}, expected "
                         f"{CHECKPOINT_FORMAT!r} (is this an encoder checkpoint? use load_encoder)")
    if int(meta.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {meta['format_version']} is newer "
                         f"than this galclip reads ({CHECKPOINT_VERSION})")
    for key in ("config", "extra"):
        try:
            meta[key] = json.loads(meta.get(key, "{}"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: metadata field '{key}' is not valid JSON ({e})") from e
    return meta


def build_model(config: Mapping[str, Any],
                encoder_factory: Callable[[Mapping[str, Any]], nn.Module] | None = None) -> GalaxyCLIP:
    """A freshly initialized GalaxyCLIP from a ``model.config`` dict (encoders rebuilt too)."""
    if encoder_factory is None:
        from galclip.models import build_encoder as encoder_factory  # noqa: N813
    cfg = dict(config)
    image, spectrum = encoder_factory(cfg.pop("image_encoder")), encoder_factory(cfg.pop("spectrum_encoder"))
    return GalaxyCLIP(image, spectrum, **cfg)


def load_model(path: str | Path, device: str | torch.device = "cpu",
               encoder_factory: Callable[[Mapping[str, Any]], nn.Module] | None = None) -> GalaxyCLIP:
    """Rebuild a GalaxyCLIP (encoders included) from one checkpoint file, in eval mode; AstroCLIP's
    released ``astroclip.ckpt`` gives the :class:`~galclip.models.astroclip.AstroCLIP` family."""
    from safetensors.torch import load_file

    from galclip.models import astroclip_checkpoint as A

    if Path(path).is_file() and A.file_kind(path) == "torch":
        return A.load_astroclip_model(path, device)

    meta = read_checkpoint_metadata(path)
    model = build_model(meta["config"], encoder_factory)
    state = load_file(str(path), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the config (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")
    return model.to(device).eval()


def frozen_modalities(freeze_backbones: bool, finetune: Sequence[str] | None = ()) -> set[str]:
    """The modalities whose backbone stays frozen: all when ``optim.freeze_backbones``, less those
    ``optim.finetune`` names (partial fine-tuning); none otherwise."""
    names = list(finetune or [])
    unknown = sorted(set(names) - {"image", "spectrum"})
    if unknown:
        raise ConfigError(f"optim.finetune: unknown modality {unknown}; name 'image' and/or 'spectrum'")
    return {"image", "spectrum"} - set(names) if freeze_backbones else set()
