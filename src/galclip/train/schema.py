"""One config schema for every training stage, resolved by the one resolver of every config.

Every stage (``pretrain-image``, ``pretrain-spectrum``, ``align``) reads the same six sections::

    seed: 0
    data:      {batch_size, num_workers, max_rows, ...}    what is read, in which batches
    model:     the encoder preset and its fields (pretraining) or the CLIP model (alignment)
    objective: {name, ...}  the objective's own settings (views, heads, loss, ...)
    optim:     {lr, weight_decay, warmup_steps, betas, grad_clip, ...}
    trainer:   {max_epochs, max_steps, accelerator, devices, precision, ...}

Defaults come in layers (as DINOv2): the stage's section dataclasses (:data:`SECTIONS`: the
fields and defaults of ``data``, ``optim`` and ``trainer``, documented in one place) -> the
objective's dataclass (``Objective`` of its module, found in :mod:`galclip.train.registry`;
the stage's first objective, AstroCLIP's, when ``objective.name`` is not given) -> the encoder
preset named by ``model.name`` (pretraining; the objective module's ``MODEL`` when not given);
then a YAML file or a packaged preset (``galclip/configs/<pretrain|align>/``) and dotted
overrides, through the one resolver of every command's config (:func:`train_config` =
:func:`galclip.config.resolve_config` of :func:`stage_schema`: unknown keys and wrong types are
errors naming the key and the file). The result is a :class:`TrainConfig`. Keys of the schema
before the one-schema redesign (``train.lr``, ``encoder.depth``, ``crops.n_local``, ...) are
refused with a message that names the new key (:data:`RENAMED`).
"""
from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from galclip.config import ConfigError, Schema, from_mapping, resolve_config
from galclip.train.registry import check_stage, objective_class, objective_names

PRESET_ROOT = Path(__file__).resolve().parents[1] / "configs"


# ----------------------------------------------------------------------------- the sections
@dataclass
class DataConfig:
    """``data``: what a stage reads, in which batches."""

    batch_size: int = 32             # per device
    num_workers: int = 0
    max_rows: int | None = None      # the first N rows of the split (None: all)


@dataclass
class PretrainData(DataConfig):
    split: str = "train"             # the split the encoder pretrains on


@dataclass
class AlignData(DataConfig):
    batch_size: int = 64             # per device; negatives span all devices
    shuffle_window: int = 8          # row groups mixed per shuffle window
    max_val_rows: int = 1000         # held-out galaxies embedded each epoch
    val_batch_size: int = 128


@dataclass
class OptimConfig:
    """``optim``: AdamW, its warm-up and gradient clipping (:mod:`galclip.train.optim`)."""

    lr: float = 5e-4
    weight_decay: float = 0.04
    warmup_steps: int = 100
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 3.0           # 0: no clipping


@dataclass
class PretrainOptim(OptimConfig):
    min_lr: float = 1e-6             # the cosine schedule ends at min_lr
    weight_decay_end: float = 0.04   # weight decay follows a cosine ramp to this


@dataclass
class AlignOptim(OptimConfig):
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50           # at most a tenth of the run
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    grad_clip: float = 1.0
    freeze_backbones: bool = True    # AstroCLIP: frozen; False: fine-tune with the two below
    finetune: list[str] = field(default_factory=list)  # with frozen backbones, these modalities' still train
    backbone_lr_scale: float = 0.1   # backbone top-layer lr = lr * scale
    layer_decay: float = 0.75        # each layer further down: lr *= layer_decay


@dataclass
class TrainerConfig:
    """``trainer``: the Lightning Trainer (:func:`galclip.train.runner.build_trainer`)."""

    max_epochs: int = -1             # -1: no limit (one of the two must be set)
    max_steps: int = -1
    accelerator: str = "auto"
    devices: Any = 1                 # a count, a list of ids or "auto" (passed to Lightning)
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"          # bf16-mixed where native (GPU, CPU with bf16), else 32-true
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 100
    progress_bar: bool = True


@dataclass
class PretrainTrainer(TrainerConfig):
    max_steps: int = 1000


@dataclass
class AlignTrainer(TrainerConfig):
    max_epochs: int = 10


#: stage -> its (data, optim, trainer) section classes
SECTIONS: dict[str, tuple[type, type, type]] = {
    "pretrain-image": (PretrainData, PretrainOptim, PretrainTrainer),
    "pretrain-spectrum": (PretrainData, PretrainOptim, PretrainTrainer),
    "align": (AlignData, AlignOptim, AlignTrainer),
}


@dataclass
class TrainConfig:
    """The resolved config of one training run: the six sections of every stage. ``model`` is
    the encoder preset and its fields (pretraining; typed by the encoder's own config) or the
    CLIP model's settings (alignment); ``objective`` the dataclass of the objective that
    ``objective.name`` names (``Objective`` of its module: :mod:`galclip.train.registry`)."""

    stage: str
    seed: int
    data: DataConfig
    model: Any
    objective: Any
    optim: OptimConfig
    trainer: TrainerConfig

    @classmethod
    def from_dict(cls, stage: str, cfg: Mapping[str, Any]) -> TrainConfig:
        """The typed config of a resolved mapping (a saved ``config.yaml``, :meth:`to_dict`)."""
        check_stage(stage)
        data, optim, trainer = SECTIONS[stage]
        objective = objective_class(stage, cfg["objective"]["name"]).Objective
        return cls(stage, cfg["seed"], from_mapping(data, cfg["data"], "data"),
                   model_section(stage, cfg["model"]),
                   from_mapping(objective, cfg["objective"], "objective"),
                   from_mapping(optim, cfg["optim"], "optim"),
                   from_mapping(trainer, cfg["trainer"], "trainer"))

    def to_dict(self) -> dict[str, Any]:
        """The nested mapping of the six sections (what ``config.yaml`` holds)."""
        out = asdict(self)
        del out["stage"]
        return out


@dataclass
class AlignEncoders:
    """``model`` of alignment, first: the two encoders, each a pretrained file or else a preset
    initialised at random; the CLIP model's settings follow (:class:`galclip.models.clip.CLIPConfig`)."""

    image_encoder: str = "image-nano"        # preset used when no checkpoint is given
    spectrum_encoder: str = "spectrum-nano"
    image_checkpoint: str | None = None      # pretrained encoder file (galclip pretrain)
    spectrum_checkpoint: str | None = None


@dataclass
class PresetName:
    """``model`` of pretraining, first: the encoder preset the run starts from; the fields of that
    encoder's config dataclass follow (e.g. :class:`galclip.models.image_encoder.ImageEncoderConfig`)."""

    name: str


@functools.cache
def _section_class(first: type, rest: type) -> type:
    """A dataclass with the fields of ``first``, then those of ``rest`` (dataclass fields follow
    the bases in reverse order): the order a ``model`` section has in ``config.yaml``. Made when
    first needed (the encoder families import torch), so it pickles by its fields."""
    cls = make_dataclass(rest.__name__.replace("Config", "") + "Model", [], bases=(rest, first),
                         namespace={"__reduce__": _reduce_model})
    cls.__module__ = __name__
    return cls


def _reduce_model(section: Any) -> tuple:
    """Pickled as its fields, rebuilt by :func:`model_section` (its class is not importable by name)."""
    return model_section, ("align" if isinstance(section, AlignEncoders) else "pretrain", asdict(section))


def model_section(stage: str, model: Mapping[str, Any]) -> Any:
    """The typed ``model`` section of a stage from its resolved mapping (unknown keys are errors)."""
    return from_mapping(model_class(stage, model), model, "model")


def model_class(stage: str, model: Mapping[str, Any]) -> type:
    """The dataclass of a stage's ``model`` section: alignment's encoders and CLIP settings;
    pretraining's preset name and the fields of its encoder family (``modality``, ``arch``)."""
    if stage == "align":
        from galclip.models.clip import CLIPConfig

        return _section_class(AlignEncoders, CLIPConfig)
    from galclip.models.registry import encoder_config_class

    return _section_class(PresetName, encoder_config_class(model["modality"], model.get("arch")))


def _align_model() -> dict[str, Any]:
    return asdict(model_class("align", {})())


def _section_defaults(stage: str) -> dict[str, Any]:
    data, optim, trainer = SECTIONS[stage]
    return {"seed": 0, "data": asdict(data()), "model": _align_model() if stage == "align" else {},
            "objective": {},  # the objective's dataclass (stage_defaults)
            "optim": asdict(optim()), "trainer": asdict(trainer())}


#: keys of the earlier schema -> their place now (a dotted prefix renames everything below it)
RENAMED: dict[str, str] = {
    "encoder": "model", **{k: f"objective.{k}" for k in
                           ("crops", "augment", "heads", "loss", "ibot", "ema", "mask", "views")},
    "train.seed": "seed", "train.epochs": "trainer.max_epochs", "train.max_steps": "trainer.max_steps",
    "train.checkpoint_every_n_steps": "trainer.checkpoint_every_n_steps",
    "train.batch_size": "data.batch_size", "train.num_workers": "data.num_workers",
    "train.max_train_rows": "data.max_rows", "train.shuffle_window": "data.shuffle_window",
    "eval.max_val_rows": "data.max_val_rows", "eval.batch_size": "data.val_batch_size",
    **{f"train.{k}": f"optim.{k}" for k in ("lr", "weight_decay", "warmup_steps", "grad_clip",
                                           "freeze_backbones", "backbone_lr_scale", "layer_decay")},
    "train.cache_backbone_features": "objective.cache_backbone_features",
    "train.cache_max_gb": "objective.cache_max_gb", "eval.pool_size": "objective.pool_size",
}


def preset_dir(stage: str) -> Path:
    check_stage(stage)
    return PRESET_ROOT / stage.split("-")[0]


def list_presets(stage: str) -> list[str]:
    """Names of the packaged presets of a stage (pretraining presets start with the modality)."""
    names = sorted(p.stem for p in preset_dir(stage).glob("*.yaml"))
    return names if stage == "align" else [n for n in names if n.startswith(stage.split("-")[1])]


def build_module(cfg: TrainConfig):
    """The LightningModule of the config's objective."""
    return objective_class(cfg.stage, cfg.objective.name)(cfg)


def _leaf_keys(d: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def check_renamed(raw: Mapping[str, Any], where: str) -> None:
    """Refuse keys of the earlier schema, naming the key that replaced each."""
    if "objective" in raw and not isinstance(raw["objective"], (Mapping, type(None))):
        raise ConfigError(f"{where}: key 'objective' is a section now: use "
                          f"'objective.name={raw['objective']}'")
    for key in _leaf_keys(raw):
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            old = ".".join(parts[:n])
            if old in RENAMED:
                new = ".".join([RENAMED[old], *parts[n:]])
                raise ConfigError(f"{where}: key '{key}' was renamed: use '{new}'")


def stage_defaults(stage: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of ``stage`` for the objective and encoder that ``raw`` (file + overrides) names."""
    check_stage(stage)
    base = _section_defaults(stage)
    name = (raw.get("objective") or {}).get("name") or objective_names(stage)[0]
    module = objective_class(stage, name)
    base["objective"] = {**asdict(module.Objective()), "name": name}
    if stage != "align":
        model = (raw.get("model") or {}).get("name") or module.MODEL
        base["model"] = _encoder_defaults(stage.split("-")[1], model)
    return base


def _encoder_defaults(modality: str, name: str) -> dict[str, Any]:
    from galclip.models.registry import encoder_config, full_encoder_config

    kind = encoder_config(name)["modality"]
    if kind != modality:
        raise ConfigError(f"config field 'model.name': {name!r} is a {kind} encoder, "
                          f"but this is {modality} pretraining")
    return {"name": name, **full_encoder_config(name)}


def stage_schema(stage: str) -> Schema:
    """The config schema of a training stage (:class:`galclip.config.Schema`): its presets, the
    defaults of the objective and encoder the layers name, refusal of renamed keys."""
    check_stage(stage)
    return Schema(preset_dir(stage), functools.partial(stage_defaults, stage),
                  functools.partial(TrainConfig.from_dict, stage), check_renamed)


def train_config(stage: str, config: str | Path | None = None,
                 overrides: Sequence[str] = ()) -> TrainConfig:
    """The resolved config of ``stage`` (:func:`galclip.config.resolve_config`): defaults -> YAML
    file or preset name -> ``key=value`` overrides (unknown keys, wrong types and renamed keys are
    ConfigErrors naming the key)."""
    return resolve_config(stage_schema(stage), config, overrides)
