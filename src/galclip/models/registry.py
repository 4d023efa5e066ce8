"""Named encoder presets and the factory that turns a name or a config dict into an encoder.

Presets are small YAML files in ``galclip/configs/encoders/<name>.yaml`` (as open_clip's model
configs); each names its ``modality`` and overrides the defaults of that modality's config
dataclass. :func:`create_encoder` is the only place where names become objects.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from galclip.config import read_yaml
from galclip.modalities import NAMES as MODALITIES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "encoders"


def list_encoders(modality: str | None = None) -> list[str]:
    """Names of the registered presets, optionally only those of one modality."""
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    return [n for n in names if modality is None or encoder_config(n)["modality"] == modality]


def encoder_config(name: str) -> dict[str, Any]:
    """The preset's config dict (as stored in its YAML file)."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown encoder {name!r}; registered: {list_encoders()}")
    cfg = read_yaml(path)
    if cfg.get("modality") not in MODALITIES:
        raise ValueError(f"{path}: field 'modality' must be one of {MODALITIES}, got {cfg.get('modality')!r}")
    return cfg


def full_encoder_config(name: str) -> dict[str, Any]:
    """Every field of a preset's config dataclass, defaults filled in (what a run config lists)."""
    preset = encoder_config(name)
    return asdict(_classes(preset["modality"], preset.get("arch"))[1](**preset))


def encoder_config_class(modality: str, arch: str | None = None) -> type:
    """The config dataclass of a modality's encoders of the family ``arch`` (see :func:`_classes`)."""
    return _classes(modality, arch)[1]


def _classes(modality: str, arch: str | None = None):
    """The (encoder class, config dataclass) of a modality and architecture family; ``arch`` None
    is the modality's transformer (ViT, SpecFormer), ``"conv"`` the convolutional family,
    ``"astroclip"`` the published AstroCLIP backbones (AstroDINO, SpecFormer)."""
    if arch not in (None, "conv", "astroclip"):
        raise ValueError(f"encoder config: unknown arch {arch!r}; choose 'conv', 'astroclip' or "
                         "leave it out")
    if arch == "astroclip" and modality in ("image", "spectrum"):  # the published AstroCLIP backbones
        from galclip.models import astroclip as A
        return ((A.AstroDinoEncoder, A.AstroDinoConfig) if modality == "image" else
                (A.SpecFormerEncoder, A.SpecFormerConfig))
    if modality == "image" and arch == "conv":
        from galclip.models.image_conv import ConvImageEncoder, ConvImageEncoderConfig
        return ConvImageEncoder, ConvImageEncoderConfig
    if modality == "spectrum" and arch == "conv":
        from galclip.models.spectrum_conv import ConvSpectrumEncoder, ConvSpectrumEncoderConfig
        return ConvSpectrumEncoder, ConvSpectrumEncoderConfig
    if modality == "image":
        from galclip.models.image_encoder import ImageEncoder, ImageEncoderConfig
        return ImageEncoder, ImageEncoderConfig
    if modality == "spectrum":
        from galclip.models.spectrum_encoder import SpectrumEncoder, SpectrumEncoderConfig
        return SpectrumEncoder, SpectrumEncoderConfig
    raise ValueError(f"encoder config: unknown modality {modality!r}; choose from {MODALITIES}")


def build_encoder(config: dict[str, Any], where: str = "encoder config"):
    """Build an encoder from a full or partial config dict (missing fields take defaults)."""
    cls, cfg_cls = _classes(config.get("modality", ""), config.get("arch"))
    known = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for a {config['modality']} encoder; "
                         f"known: {sorted(known)}")
    return cls(cfg_cls(**config))


def create_encoder(name: str, **overrides: Any):
    """A fresh (randomly initialized) encoder from a named preset, with field overrides."""
    cfg = {**encoder_config(name), **overrides}
    return build_encoder(cfg, where=f"encoder {name!r}")
