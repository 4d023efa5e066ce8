"""``galclip demo --precision``: the setting reaches every training stage and the supervised
baselines, ``auto`` adds nothing (the presets' own policy), and a changed setting reruns the
stages that depend on training while the simulated survey is kept."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from galclip import demo as D


def _captured_overrides(monkeypatch, tmp_path: Path, precision: str) -> dict:
    import galclip.eval.evaluate as E
    import galclip.train.runner as R

    seen = {}
    monkeypatch.setattr(R, "train", lambda stage, data, folder, preset, overrides:
                        seen.setdefault(stage, overrides))
    monkeypatch.setattr(E, "evaluate", lambda model, data, folder, cfg, *a, **k:
                        seen.setdefault("evaluate", cfg))
    steps = {s.folder: s for s in D.build_steps(tmp_path, "cpu", 10, 0, None, precision)}
    for folder in ("pretrain-spectrum", "align", "report"):
        (tmp_path / folder).mkdir(exist_ok=True)
        steps[folder].run(tmp_path / folder)
    return seen


def test_a_fixed_precision_reaches_pretraining_alignment_and_baselines(monkeypatch, tmp_path):
    seen = _captured_overrides(monkeypatch, tmp_path, "32-true")
    assert "trainer.precision=32-true" in seen["pretrain-spectrum"]
    assert "trainer.precision=32-true" in seen["align"]
    cfg = seen["evaluate"]
    assert cfg.baselines.image.precision == cfg.baselines.spectrum.precision == "32-true"


def test_auto_leaves_the_presets_alone(monkeypatch, tmp_path):
    seen = _captured_overrides(monkeypatch, tmp_path, "auto")
    assert not any("precision" in o for o in [*seen["pretrain-spectrum"], *seen["align"]])
    assert seen["evaluate"].baselines.image.precision == "auto"


def test_unknown_precision_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        D.run_demo(tmp_path, precision="fp16")


def test_changing_the_precision_reruns_the_training_stages_but_not_the_simulation(monkeypatch, tmp_path):
    runs = []

    def fake_steps(out, preset, n, seed, workers, precision="auto", reference=None):
        def step(folder):
            def run(path):
                runs.append(folder)
                old = path / "out.txt"
                if old.exists() and old.read_text() != precision:   # as train()'s own check does
                    raise RuntimeError(f"{path} was trained with another precision")
                old.write_text(precision)
                if folder == "report":
                    (path / "metrics.json").write_text(json.dumps({}))
            run.__name__ = folder.replace("-", "_")
            return D.Step(folder, folder, run, ["out.txt"])
        return [step("data"), step("align"), step("report")]

    monkeypatch.setattr(D, "build_steps", fake_steps)
    monkeypatch.setattr(D, "summary_text", lambda metrics, out: "")
    D.run_demo(tmp_path, "tiny")
    assert runs == ["data", "align", "report"]
    D.run_demo(tmp_path, "tiny")                        # finished: nothing runs again
    assert runs == ["data", "align", "report"]
    D.run_demo(tmp_path, "tiny", precision="32-true")   # training changes: all but the survey
    assert runs == ["data", "align", "report", "align", "report"]
    assert (tmp_path / "align" / "out.txt").read_text() == "32-true"
    D.run_demo(tmp_path, "tiny", precision="32-true")
    assert len(runs) == 5
