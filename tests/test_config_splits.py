"""Config layering and deterministic splits."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from galclip.config import ConfigError, from_mapping, load_config, save_config
from galclip.data.splits import assign_splits, split_indices


def test_config_layers_and_unknown_keys(tmp_path):
    defaults = {"model": {"depth": 2, "width": 64}, "optim": {"lr": 1e-3}}
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  depth: 4\n")
    cfg = load_config(defaults, f, ["optim.lr=3e-4", "model.width=128"])
    assert cfg == {"model": {"depth": 4, "width": 128}, "optim": {"lr": 3e-4}}
    with pytest.raises(ConfigError, match="unknown key 'dpeth'"):
        load_config(defaults, None, ["model.dpeth=3"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(defaults, tmp_path / "run" / "config.yaml") == cfg


def test_splits_are_deterministic_and_proportional():
    ids = np.arange(20000, dtype=np.int64) * 7919 + 13
    s = assign_splits(ids)
    assert (assign_splits(ids[::-1])[::-1] == s).all()  # depends on id only, not order
    frac = {k: np.mean(s == k) for k in ("train", "val", "test")}
    assert abs(frac["train"] - 0.8) < 0.02 and abs(frac["test"] - 0.1) < 0.01
    test_idx = split_indices(ids, "test")
    assert set(test_idx) == set(np.flatnonzero(s == "test"))
    stored = np.array(["train", "test"] * 5)
    assert split_indices(np.arange(10), "test", stored=stored).tolist() == [1, 3, 5, 7, 9]



@dataclass
class _Inner:
    size: int = 3
    scale: float = 1.0


@dataclass
class _Outer:
    name: str = "x"
    inner: _Inner = field(default_factory=_Inner)
    sizes: list = field(default_factory=list)


def test_from_mapping_builds_nested_dataclasses_and_names_an_unknown_key():
    built = from_mapping(_Outer, {"inner": {"size": 5}, "sizes": [1, 2]})
    assert built == _Outer("x", _Inner(5, 1.0), [1, 2]) and isinstance(built.inner, _Inner)
    with pytest.raises(ConfigError, match=r"objective\.inner: unknown key\(s\) \['sise'\]"):
        from_mapping(_Outer, {"inner": {"sise": 5}}, "objective")
