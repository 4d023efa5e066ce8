"""Typed configuration in three layers (as DINOv2): defaults -> YAML file -> dotted overrides.

``load_config(defaults, path, ["optim.lr=1e-4", "model.depth=6"])`` returns a nested dict;
unknown override keys are an error (a typo never silently does nothing). The resolved config
is written beside every run with :func:`save_config`.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """YAML loader that reads ``3e-4`` as a float (YAML 1.1 needs ``3.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and key."""


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any], where: str = "",
               strict: bool = True) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; unknown keys raise if ``strict``."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if strict and key not in out:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {sorted(out)})")
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value, f"{where}.{key}" if where else key, strict)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b.c=3"`` -> ``{"a": {"b": {"c": 3}}}``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    value: Any = _yaml_load(raw) if raw != "" else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = _yaml_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def preset_or_file(config: str | Path | None, preset_dir: Path) -> Path | None:
    """A YAML file path, or the name of a packaged preset in ``preset_dir`` (``cpu`` ...)."""
    if config is None:
        return None
    path = Path(config)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    preset = Path(preset_dir) / f"{config}.yaml"
    if not preset.exists():
        names = sorted(p.stem for p in Path(preset_dir).glob("*.yaml"))
        raise ConfigError(f"{config}: no such config file, and not a preset (presets: {names})")
    return preset


def load_config(defaults: Mapping[str, Any], path: str | Path | None = None,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
    """defaults -> file -> overrides, each layer checked against the keys of the defaults."""
    cfg = copy.deepcopy(dict(defaults))
    if path is not None:
        cfg = deep_merge(cfg, read_yaml(path), where=str(path))
    for text in overrides:
        cfg = deep_merge(cfg, parse_override(text), where=f"override '{text}'")
    return cfg


def save_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config (atomically) so a run can be reproduced exactly."""
    from galclip.data.format import _atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    tmp.write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
    tmp.replace(path)
