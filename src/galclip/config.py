"""Typed configuration in three layers (as DINOv2): defaults -> YAML file -> dotted overrides.

Every command that takes a config (the training stages, ``galclip evaluate``) describes it by a
:class:`Schema` -- where its packaged presets live, its defaults, the typed config (dataclasses
with documented defaults) built from the resolved mapping -- and resolves it with the one
:func:`resolve_config`: defaults -> a YAML file or the name of a packaged preset -> ``key=value``
overrides (``["optim.lr=1e-4", "model.depth=6"]``). Unknown keys are an error (a typo never
silently does nothing), and so is a value of the wrong type for its key (the defaults are the
schema: a number where a number is expected, a mapping where a section is, a count >= 0 where the
default is a positive number; see :func:`check_value`); each message names the key and the file
or override. The resolved config is written beside every run with :func:`save_config`.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Callable, Mapping, Sequence
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
    """A config file or override is invalid; the message names the file and key (``key``: the
    dotted key or section, where one is known)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


#: keys passed through to other libraries unchecked (Lightning accepts devices="auto" or 2)
LOOSE_KEYS = ("trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.precision")
#: counts that must be at least 1 when their default is a positive integer
AT_LEAST_ONE = ("epochs", "max_epochs", "batch_size", "pool_size", "depth", "dim", "embed_dim", "heads",
                "num_heads", "patch_size", "n_views", "log_every_n_steps")


#: a kind of value, the types that may stand for it (an int for a number) and its name in messages
KINDS = ((bool, (bool,), "true or false"), (int, (int,), "an integer"),
         (float, (int, float), "a number"), (str, (str,), "a string"),
         (list, (list, tuple), "a list"), (Mapping, (Mapping,), "a mapping (a section)"))


def _kind_error(kind: type, value: Any) -> str | None:
    """How ``value`` fails to be of ``kind``, one of :data:`KINDS` (None: it is one; a bool is
    no number)."""
    accepted, desc = next((a, d) for k, a, d in KINDS if k is kind)
    bad = not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool))
    return f"must be {desc}, got {value!r:.60}" if bad else None


def _optional_scalar(hint: Any) -> type | None:
    """``X`` of a field declared ``X | None`` with X a bool, int, float or str, else None."""
    args = typing.get_args(hint)
    kinds = [a for a in args if a is not type(None)]
    if len(args) == 2 and len(kinds) == 1 and kinds[0] in (bool, int, float, str):
        return kinds[0]
    return None


def check_value(where: str, key: str, default: Any, value: Any) -> None:
    """``value`` may replace ``default``: same kind (bool, int, number, string, list, mapping;
    anything where the default is None) and, for a positive numeric default, not negative."""
    name = key.rsplit(".", 1)[-1]
    if default is None or value is None and not isinstance(default, Mapping):
        return
    kind = next((k for k, _, _ in KINDS if isinstance(default, k)), None)
    error = _kind_error(kind, value) if kind else None
    if error:
        raise ConfigError(f"{where}: key '{key}' {error}", key)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0:
        low = 1 if isinstance(default, int) and name in AT_LEAST_ONE else 0
        if value < low:
            raise ConfigError(f"{where}: key '{key}' must be >= {low}, got {value!r}")


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any], where: str = "",
               strict: bool = True, _prefix: str = "",
               schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; unknown keys and (if ``strict``)
    values of the wrong type for their value in ``schema`` (the defaults; ``base`` when not
    given: :func:`check_value`) raise a ConfigError naming the key."""
    out = copy.deepcopy(dict(base))
    ref = base if schema is None else schema
    for key, value in update.items():
        full = f"{_prefix}.{key}" if _prefix else str(key)
        if strict and key not in out:
            loc = ".".join(x for x in (where, _prefix) if x)
            raise ConfigError(f"{loc}: unknown key '{key}' (known: {sorted(out)})")
        if strict and key in out and full not in LOOSE_KEYS:
            check_value(where, full, ref[key] if key in ref else out[key], value)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            sub = ref.get(key) if isinstance(ref.get(key), Mapping) else None
            out[key] = deep_merge(out[key], value, where, strict, full, sub)
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
    """defaults -> file -> overrides, each layer checked against the keys and the values of the
    defaults (a key whose default is None takes a value of any kind here, whatever an earlier
    layer set; a typed config checks it against its field's type: :func:`from_mapping`)."""
    cfg = copy.deepcopy(dict(defaults))
    if path is not None:
        cfg = deep_merge(cfg, read_yaml(path), where=str(path), schema=defaults)
    for text in overrides:
        cfg = deep_merge(cfg, parse_override(text), where=f"override '{text}'", schema=defaults)
    return cfg


def from_mapping(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """The dataclass ``cls`` built from a nested mapping (a resolved config section): a field
    whose type is a dataclass is built from its sub-mapping; a missing key keeps its default;
    an unknown key, a value of another kind than a field ``X | None`` declares, or values the
    dataclass itself refuses, are a ConfigError naming the key or section."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown} (known: {sorted(names)})")
    types = typing.get_type_hints(cls)
    out = {}
    for key, value in data.items():
        sub, full = types[key], f"{where}.{key}".lstrip(".")
        nested = dataclasses.is_dataclass(sub) and isinstance(value, Mapping)
        kind = _optional_scalar(sub)
        error = _kind_error(kind, value) if kind and value is not None else None
        if error:  # what the defaults cannot check: a field whose default is None
            raise ConfigError(f"key '{full}' {error.replace(', got', ' or null, got')}", full)
        out[key] = from_mapping(sub, value, full) if nested else copy.deepcopy(value)
    try:
        return cls(**out)
    except (TypeError, ValueError) as e:  # a missing field, or the dataclass's own check
        raise ConfigError(f"{where or cls.__name__}: {e}", where or None) from e


@dataclasses.dataclass(frozen=True)
class Schema:
    """What one command's config is: the folder of its packaged presets; ``defaults(raw)``, the
    defaults mapping, given the file and overrides merged unchecked (``raw``: a training stage's
    defaults depend on the objective it names); ``build(resolved)``, the typed config of the
    resolved mapping; ``check(layer, where)``, which may refuse keys of a layer (a file, an
    override) before anything merges."""

    preset_dir: Path
    defaults: Callable[[Mapping[str, Any]], dict[str, Any]]
    build: Callable[[dict[str, Any]], Any]
    check: Callable[[Mapping[str, Any], str], None] | None = None


def typed_schema(cls: type, preset_dir: Path) -> Schema:
    """The schema of a config that is the dataclass ``cls``: its defaults are the field defaults."""
    return Schema(preset_dir, lambda raw: dataclasses.asdict(cls()),
                  lambda resolved: from_mapping(cls, resolved))


def resolve_config(schema: Schema, config: str | Path | None = None,
                   overrides: Sequence[str] = ()) -> Any:
    """The typed config of ``schema``: defaults -> YAML file or preset name (None: the defaults
    alone) -> ``key=value`` overrides; unknown keys and wrong types are ConfigErrors naming the
    key and the file or override."""
    path = preset_or_file(config, schema.preset_dir)
    raw = file = read_yaml(path) if path else {}
    check = schema.check or (lambda layer, where: None)
    check(raw, str(path))
    for text in overrides:
        over = parse_override(text)
        check(over, f"override '{text}'")
        raw = deep_merge(raw, over, strict=False)
    resolved = load_config(schema.defaults(raw), path, overrides)
    try:
        return schema.build(resolved)
    except ConfigError as e:  # a check of the typed config: name the layer that set the key
        if e.key is None:
            raise
        raise ConfigError(f"{_set_by(e.key, path, file, overrides)}: {e}", e.key) from e


def _set_by(key: str, path: Path | None, file: Mapping[str, Any], overrides: Sequence[str]) -> str:
    """The layer that set ``key`` (or something in the section ``key``) last."""
    def sets(tree: Any) -> bool:
        for part in key.split("."):
            if not isinstance(tree, Mapping) or part not in tree:
                return False
            tree = tree[part]
        return True
    last = next((f"override '{t}'" for t in reversed(overrides) if sets(parse_override(t))), None)
    return last or (str(path) if path and sets(file) else "the defaults")


def section_fields(section: Any) -> dict[str, Any]:
    """A config section's fields by name, each read by attribute (shallow, unlike ``asdict``:
    what a constructor takes as keyword arguments)."""
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}


def save_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config (atomically) so a run can be reproduced exactly."""
    from galclip.storage import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
