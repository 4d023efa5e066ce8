"""The evaluation config: typed sections from the one resolver, clear errors, a faithful config.yaml."""
from __future__ import annotations

import pytest

from galclip.config import ConfigError, from_mapping, read_yaml, save_config
from galclip.eval.schema import (
    PRESET_DIR,
    EvalConfig,
    ImageBaseline,
    SpectrumBaseline,
    evaluation_config,
)


@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_every_preset_resolves_to_typed_sections_and_round_trips(preset, tmp_path):
    cfg = evaluation_config(preset)
    assert isinstance(cfg, EvalConfig)
    assert isinstance(cfg.baselines.image, ImageBaseline)
    assert isinstance(cfg.baselines.spectrum, SpectrumBaseline)
    file = read_yaml(PRESET_DIR / f"{preset}.yaml")
    for name, value in file["baselines"]["image"].items():  # the file's values win over defaults
        assert getattr(cfg.baselines.image, name) == value, name
    save_config(cfg.to_dict(), tmp_path / "config.yaml")
    assert from_mapping(EvalConfig, read_yaml(tmp_path / "config.yaml")) == cfg


def test_overrides_apply_on_top_of_the_preset_and_keep_types():
    cfg = evaluation_config("cpu", ["knn.k=8", "baselines.image.epochs=1", "plots.dpi=40",
                                    "baselines.photometry.enabled=false", "probe.hidden=[32]"])
    assert (cfg.knn.k, cfg.baselines.image.epochs, cfg.plots.dpi) == (8, 1, 40)
    assert cfg.baselines.photometry.enabled is False and cfg.baselines.unaligned.enabled is True
    assert cfg.baselines.image.max_seconds == 480 and cfg.baselines.image.shift == 7  # the preset's
    assert cfg.probe.hidden == [32] and cfg.probe.epochs == EvalConfig().probe.epochs
    assert evaluation_config(None) == EvalConfig()  # no preset: the documented defaults
    # checked against the field (a number or null), not against the preset's 480
    longer = evaluation_config("cpu", ["baselines.image.max_seconds=600.5"])
    assert longer.baselines.image.max_seconds == 600.5


def test_a_baseline_section_lists_its_network_before_its_budget():
    """config.yaml reads as the network, then how it trains (the order of the dataclass fields)."""
    image = list(EvalConfig().to_dict()["baselines"]["image"])
    spectrum = list(EvalConfig().to_dict()["baselines"]["spectrum"])
    assert image[:5] == ["enabled", "arch", "encoder", "downsample", "shift"]
    assert spectrum[:5] == ["enabled", "arch", "encoder", "augment", "noise_max"]
    assert image[5:] == spectrum[10:] == ["max_train", "epochs", "batch_size", "lr", "weight_decay",
                                         "patience", "lr_patience", "max_seconds",
                                         "precision"]


@pytest.mark.parametrize("override,message", [
    ("knn.kk=8", "unknown key 'kk'"),
    ("knn.k=many", "key 'knn.k' must be an integer"),
    ("baselines.image.enabled=maybe", "key 'baselines.image.enabled' must be true or false"),
    ("baselines.image.epochs=0", "key 'baselines.image.epochs' must be >= 1"),
    ("data.max_test=lots", "key 'data.max_test' must be an integer"),
    ("baselines.spectrum.max_seconds=soon", "key 'baselines.spectrum.max_seconds' must be a number or null"),
    ("retrieval=10", "key 'retrieval' must be a mapping"),
    ("baseline.image.epochs=1", "unknown key 'baseline'")])
def test_a_bad_override_names_the_key_and_the_override(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        evaluation_config("cpu", [override])
    assert f"override '{override}'" in str(err.value)


@pytest.mark.parametrize("text,message", [
    ("plots:\n  dpi: high\n", "key 'plots.dpi' must be an integer"),
    ("data:\n  max_train: all\n", "key 'data.max_train' must be an integer or null")])  # default None
def test_a_bad_config_file_names_the_key_and_the_file(text, message, tmp_path, capsys):
    from galclip.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        evaluation_config(bad)
    assert str(err.value).startswith(f"{bad}: ")
    rc = main(["evaluate", "--model", str(tmp_path / "m.safetensors"), "--data", str(tmp_path),
               "--out", str(tmp_path / "out"), "--config", str(bad)])
    assert rc != 0 and message.split("'")[1] in capsys.readouterr().err
    assert not (tmp_path / "out" / "config.yaml").exists()


def test_the_probe_section_and_the_seed_make_the_probes_config():
    from galclip.eval.evaluate import Context

    cfg = evaluation_config("cpu", ["seed=5", "probe.epochs=7"])
    ctx = Context(cfg, None, "cpu", *[None] * 4, [], [], {}, {})
    assert (ctx.probe.seed, ctx.probe.epochs, ctx.probe.hidden) == (5, 7, [64, 64])
