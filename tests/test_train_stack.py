"""The one training stack: every packaged preset of every stage reads every field, the resume
policy (finished runs are a no-op, runs extend exactly, other changes are refused), one schedule
and no-decay rule, one dihedral augmentation, renamed keys, versioned encoder files."""
from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch

from galclip.config import ConfigError
from galclip.train.registry import STAGES
from galclip.train.schema import TrainerConfig, list_presets, train_config

RUN = ["trainer.max_steps=2", "trainer.checkpoint_every_n_steps=1", "trainer.log_every_n_steps=1",
       "trainer.progress_bar=false", "trainer.accelerator=cpu", "trainer.devices=1",
       "trainer.strategy=auto", "data.batch_size=8", "data.num_workers=0", "optim.warmup_steps=1"]
#: CPU-sized models per objective, and the optional branches switched on so their fields are read
SHRINK = {
    "dino": ["model.name=image-nano", "model.depth=1", "objective.heads.hidden_dim=64",
             "objective.heads.bottleneck_dim=32", "objective.heads.output_dim=128",
             "objective.crops.n_local=1", "objective.crops.global_size=72", "objective.crops.local_size=36"],
    "simclr": ["model.name=image-conv-nano", "model.channels=[8,16,16,16]", "model.embed_dim=32",
               "objective.heads.hidden_dim=32", "objective.heads.output_dim=16"],
    "masked": ["model.name=spectrum-nano", "model.depth=1"],
    "contrastive": ["model.name=spectrum-conv-nano", "model.channels=[8,16,16]", "model.embed_dim=32",
                    "objective.heads.hidden_dim=32", "objective.loss.equivariance_weight=1.0"],
    "clip": ["model.image_encoder=image-nano", "model.spectrum_encoder=spectrum-nano",
             "model.embed_dim=32", "model.head_num_heads=4", "data.val_batch_size=64",
             "data.max_val_rows=64", "data.max_rows=16", "trainer.max_epochs=1",
             "objective.cache_backbone_features=true"],  # one whole epoch (2 steps), then validation
}
PRESETS = [(stage, name) for stage in STAGES for name in list_presets(stage)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from conftest import random_rows
    from galclip.data import Provenance, shard_name, write_manifest, write_shard

    out = tmp_path_factory.mktemp("stack") / "ds"
    out.mkdir()
    shards = [write_shard(out / shard_name(i), random_rows(40, seed=i, start_id=40 * i)) for i in range(3)]
    write_manifest(out, shards, Provenance(command="test", seed=0))
    return out


class Tracked:
    """A resolved config (typed sections and mappings) that records which leaves were read (by
    attribute, ``[]`` or ``.get``)."""

    def __init__(self, data, path="", seen=None):
        self._data, self._path, self.seen = data, path, set() if seen is None else seen

    def _read(self, key, value):
        self.seen.add(self._path + key)
        if dataclasses.is_dataclass(value) or isinstance(value, dict) and value:
            return Tracked(value, f"{self._path}{key}.", self.seen)
        return value

    def __getattr__(self, name):
        if name.startswith("__"):  # dataclasses.fields() of a section: not a read of a field
            return getattr(self._data, name)
        return self._read(name, getattr(self._data, name))

    def __getitem__(self, key):
        return self._read(key, self._data[key])

    def get(self, key, default=None):
        return self[key] if key in self._data else default

    def keys(self):
        return self._data.keys()

    def __iter__(self):
        return iter(self._data)

    def __contains__(self, key):
        return key in self._data


def _leaves(d, path=""):
    for k, v in d.items():
        yield from _leaves(v, f"{path}{k}.") if isinstance(v, dict) and v else [path + k]


def test_every_stage_has_packaged_presets():
    assert {("align", "cpu"), ("align", "gpu"), ("pretrain-image", "image-cpu"),
            ("pretrain-spectrum", "spectrum-specformer")} <= set(PRESETS)


@pytest.mark.slow
@pytest.mark.parametrize("stage,preset", PRESETS, ids=[f"{s}:{p}" for s, p in PRESETS])
def test_every_field_of_every_preset_is_read(stage, preset, dataset, tmp_path):
    """Every key a packaged preset sets is a field of the one schema (unknown keys are refused
    when it resolves), and every field of the resolved config is read by a short run."""
    from galclip.train.runner import fit_stage, get_stage

    objective = train_config(stage, preset).objective.name
    run = [a for a in RUN if objective != "clip" or not a.startswith("trainer.max_steps")]
    cfg = train_config(stage, preset, run + SHRINK[objective])
    tracked = Tracked(cfg)
    trainer = fit_stage(get_stage(stage), tracked, dataset, tmp_path)
    assert trainer.state.finished and trainer.global_step >= 1
    unread = set(_leaves(cfg.to_dict())) - tracked.seen
    assert not unread, unread
    assert (tmp_path / get_stage(stage).weights).exists()


class RecordStart(L.Callback):
    start = None

    def on_train_start(self, trainer, module) -> None:
        self.start = trainer.global_step


def test_resume_policy_no_op_extend_refuse(dataset, tmp_path):
    import galclip.models as M
    from galclip.train.runner import train

    out = tmp_path / "run"
    args = [*RUN, *SHRINK["masked"], "trainer.checkpoint_every_n_steps=100"]
    path = train("pretrain-spectrum", dataset, out, None, args)
    written = path.stat().st_mtime_ns
    rec = RecordStart()
    assert train("pretrain-spectrum", dataset, out, None, args, [rec]) == path
    assert rec.start is None and path.stat().st_mtime_ns == written  # finished: nothing ran
    assert not (out / "logs" / "version_1").exists()
    # extending max_steps continues from the final state (no periodic checkpoint was due)
    longer = [*args, "trainer.max_steps=3"]
    path = train("pretrain-spectrum", dataset, out, None, longer, [rec])
    assert rec.start == 2 and M.checkpoint.read_metadata(path)["pretrain_steps"] == "3"
    with pytest.raises(ConfigError, match=r"optim\.lr.*only trainer.max_epochs and trainer.max_steps"):
        train("pretrain-spectrum", dataset, out, None, [*args, "optim.lr=1e-2"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text((dataset / "manifest.json").read_text() + " ")
    with pytest.raises(ConfigError, match="other inputs"):
        train("pretrain-spectrum", other, out, None, [*args, "trainer.max_steps=3"])


def test_one_schedule_and_one_no_decay_rule():
    from galclip.train.optim import param_groups, warmup_cosine

    with pytest.raises(TypeError):
        warmup_cosine(3, 10, 100)  # keyword-only: the order of warmup and total cannot be swapped
    assert warmup_cosine(0, warmup=4, total=20) == pytest.approx(0.25)
    assert warmup_cosine(4, warmup=4, total=20) == pytest.approx(1.0)
    assert warmup_cosine(20, warmup=4, total=20, start=2.0, end=0.5) == pytest.approx(0.5)
    assert warmup_cosine(12, warmup=4, total=20) == pytest.approx(0.5)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    net.query = torch.nn.Parameter(torch.zeros(1, 1, 4))
    net.frozen = torch.nn.Parameter(torch.zeros(2, 2), requires_grad=False)
    named = [*net.named_parameters(), ("again", net[0].weight)]
    groups = param_groups(named, lr=0.1, weight_decay=0.05, lr_scale=lambda n: 0.5 if n == "query" else 1)
    by = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in groups}
    assert by == {(0.1, 0.05): 1, (0.1, 0.0): 3, (0.05, 0.0): 1}  # weight; biases + norm; query


def test_one_dihedral_augmentation_for_every_stage():
    from galclip.augment import apply_dihedral, dihedral_params, random_dihedral

    x = torch.arange(8 * 2 * 5 * 5, dtype=torch.float32).reshape(8, 2, 5, 5)
    k, flip = torch.arange(8) % 4, torch.arange(8) >= 4
    turned = [torch.rot90(img, int(r), dims=(-2, -1)) for img, r in zip(x, k, strict=True)]
    want = torch.stack([t.flip(-1) if f else t for t, f in zip(turned, flip, strict=True)])
    assert torch.equal(apply_dihedral(x, k, flip), want)
    assert len({tuple(v.flatten().tolist()) for v in want[:, 0]}) == 8
    torch.manual_seed(3)
    drawn = random_dihedral(x)
    torch.manual_seed(3)
    assert torch.equal(drawn, apply_dihedral(x, *dihedral_params(8)))


@pytest.mark.parametrize("stage,old,new", [
    ("align", "train.epochs=2", "trainer.max_epochs"), ("align", "train.lr=1e-3", "optim.lr"),
    ("align", "eval.pool_size=10", "objective.pool_size"),
    ("align", "train.freeze_backbones=false", "optim.freeze_backbones"),
    ("pretrain-image", "encoder.depth=2", "model.depth"),
    ("pretrain-image", "crops.n_local=2", "objective.crops.n_local"),
    ("pretrain-image", "objective=simclr", "objective.name=simclr")])
def test_renamed_keys_name_the_new_key(stage, old, new):
    with pytest.raises(ConfigError, match=f"use '{new}'"):
        train_config(stage, None, [old])


@pytest.mark.parametrize("stage", STAGES)
def test_the_resolved_config_is_typed_and_round_trips(stage, tmp_path):
    """train_config gives the stage's typed sections (defaults from their dataclasses); the
    mapping written as config.yaml rebuilds the same config."""
    from galclip.config import read_yaml, save_config
    from galclip.train.registry import objective_class
    from galclip.train.schema import SECTIONS, TrainConfig

    cfg = train_config(stage, None, ["optim.lr=2e-3", "trainer.max_steps=7"])
    data, optim, trainer = SECTIONS[stage]
    assert (type(cfg.data), type(cfg.optim), type(cfg.trainer)) == (data, optim, trainer)
    assert cfg.optim.lr == 2e-3 and cfg.trainer.max_steps == 7
    assert cfg.data.batch_size == data().batch_size
    assert type(cfg.objective) is objective_class(stage, cfg.objective.name).Objective
    save_config(cfg.to_dict(), tmp_path / "config.yaml")
    assert TrainConfig.from_dict(stage, read_yaml(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize("stage,preset,field", [
    ("align", "cpu", "image_encoder"), ("pretrain-image", "image-cpu", "name"),
    ("pretrain-spectrum", "spectrum-specformer", "name")])
def test_the_model_section_is_typed_lists_its_first_fields_first_and_pickles(stage, preset, field):
    """``model`` is a dataclass too (alignment: the encoders, then CLIPConfig; pretraining: the
    preset's name, then its encoder family's config), in config.yaml's order; a run config
    survives pickling (its model class is made at run time)."""
    import pickle

    cfg = train_config(stage, preset, ["model.embed_dim=48"])
    assert dataclasses.is_dataclass(cfg.model) and cfg.model.embed_dim == 48
    assert next(iter(cfg.to_dict()["model"])) == field
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown key 'embed_dimm'"):
        train_config(stage, preset, ["model.embed_dimm=32"])


@pytest.mark.parametrize("text,key", [
    ("optim:\n  lrr: 1.0e-3\n", "unknown key 'lrr'"),
    ("trainer:\n  max_steps: many\n", "key 'trainer.max_steps' must be an integer"),
    ("dataa:\n  batch_size: 8\n", "unknown key 'dataa'"),
    ("data: 8\n", "key 'data' must be a mapping"),
    ("data:\n  max_rows: many\n", "key 'data.max_rows' must be an integer or null"),  # default None
    ("model:\n  embed_dim: 99\n", "model: .*embed_dim 99 is not divisible"),  # the encoder's check
    ("train:\n  lr: 1.0e-3\n", "key 'train.lr' was renamed: use 'optim.lr'")])
def test_a_bad_config_file_is_one_clear_error_naming_the_key_and_file(text, key, tmp_path, capsys):
    from galclip.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=key) as err:
        train_config("pretrain-spectrum", bad)
    assert str(bad) in str(err.value)
    rc = main(["pretrain", "spectrum", "--config", str(bad), "--data", str(tmp_path), "--out",
               str(tmp_path / "run")])
    out = capsys.readouterr().err.strip()
    assert rc == 2 and str(bad) in out and "Traceback" not in out and len(out.splitlines()) == 1


def test_precision_policy_and_encoder_file_version(tmp_path):
    from galclip.models import create_encoder, load_encoder, save_encoder
    from galclip.models.checkpoint import read_metadata, write_safetensors
    from galclip.train.runner import precision

    assert precision(TrainerConfig(precision="32-true", accelerator="cpu")) == "32-true"
    assert precision(TrainerConfig(precision="16-mixed", accelerator="gpu")) == "16-mixed"
    enc = create_encoder("spectrum-conv-nano")
    path = save_encoder(enc, tmp_path / "enc.safetensors")
    meta = read_metadata(path)
    assert meta["format_version"] == "1"
    write_safetensors(tmp_path / "new.safetensors", enc, {**meta, "format_version": "2"})
    with pytest.raises(ValueError, match="newer"):
        load_encoder(tmp_path / "new.safetensors")
    assert load_encoder(path).config == enc.config


def test_training_batches_are_the_default_collates_tensors(dataset):
    """The training loaders stack array columns with numpy (one thread) instead of torch's
    default collate: the batches must be the same tensors, dtype and all, scalars included."""
    import numpy as np
    from torch.utils.data import default_collate

    from galclip.data import open_dataset
    from galclip.train.data import collate_rows

    ds = open_dataset(dataset)
    rows = [ds[i] for i in (0, 7, 45, 90)]
    assert any(isinstance(v, np.ndarray) for v in rows[0].values())
    assert any(not isinstance(v, np.ndarray) for v in rows[0].values())
    ours, theirs = collate_rows(rows), default_collate(rows)
    assert ours.keys() == theirs.keys()
    for key, want in theirs.items():
        got = ours[key]
        assert type(got) is type(want), key
        if isinstance(want, torch.Tensor):
            assert got.dtype == want.dtype and torch.equal(got, want), key
        else:
            assert got == want, key


def test_views_on_one_cpu_thread_are_the_same_bits():
    """The augmentation views run on one intra-op thread on the CPU (cpu_one_thread): with the
    same seed they must give what the undecorated functions give on several threads."""
    from galclip import augment as A

    torch.manual_seed(0)
    img, flux = torch.rand(16, 3, 70, 70), torch.randn(16, 3000)
    ivar = torch.rand(16, 3000) * (torch.rand(16, 3000) > 0.1)
    calls = {
        "random_crops": lambda f: f(img, 60, 5),
        "apply_dihedral": lambda f: f(img, *A.dihedral_params(16)),
        "add_noise": lambda f: f(img, torch.tensor([1.0, 2.0, 3.0]), 0.5),
        "ivar_noise": lambda f: f(flux, ivar, 1.0),
        "noise_view": lambda f: f(flux, ivar, 1.0),
        "span_dropout": lambda f: f(ivar, 4, 30),
        "shift_view": lambda f: f(flux, ivar, torch.randint(-9, 10, (16,))),
        "calibration_view": lambda f: f(flux, ivar, 0.1),
    }
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name, call in calls.items():
            fn = getattr(A, name)
            outs = []
            for f in (fn, fn.__wrapped__):
                torch.manual_seed(1)
                out = call(f)
                outs.append(out if isinstance(out, tuple) else (out,))
            assert all(torch.equal(a, b) for a, b in zip(*outs, strict=True)), name
            assert torch.get_num_threads() == 2, name   # the count is restored
    finally:
        torch.set_num_threads(before)
