"""``galclip demo`` resumes a stage only when it finished with the same settings, and those
include what the packaged presets and the simulator's defaults resolve to
(:func:`galclip.demo.stage_recipes`): after an upgrade that changes a preset, the changed stage
and every later one run again in a cleared folder instead of being skipped."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from galclip import demo as D


def _with_spectrum_override(monkeypatch, override: str) -> None:
    p = D.PRESETS["tiny"]
    stage = D.StageConfig(p.pretrain_spectrum.preset, (*p.pretrain_spectrum.overrides, override))
    monkeypatch.setitem(D.PRESETS, "tiny", dataclasses.replace(p, pretrain_spectrum=stage))


def test_a_changed_preset_changes_its_stage_and_every_later_one(monkeypatch):
    before = D.stage_recipes("tiny", 100, 0)
    _with_spectrum_override(monkeypatch, "objective.views.noise_max=2")
    after = D.stage_recipes("tiny", 100, 0)
    assert after["data"] == before["data"]
    assert after["pretrain-image"] == before["pretrain-image"]
    for folder in ("pretrain-spectrum", "align", "catalog", "report"):
        assert after[folder] != before[folder], folder


def test_a_changed_simulator_default_changes_the_survey_and_everything_after(monkeypatch):
    import galclip.sim.survey as S

    before = D.stage_recipes("tiny", 100, 0)

    @dataclasses.dataclass
    class Deeper(S.SimConfig):
        deep_fraction: float = S.DEEP_FRACTION + 0.5

    monkeypatch.setattr(S, "SimConfig", Deeper)
    after = D.stage_recipes("tiny", 100, 0)
    assert all(after[f] != before[f] for f in before)


def test_the_reference_galaxies_change_the_survey_folder_and_everything_after():
    preset = D.stage_recipes("tiny", 100, 0)
    assert D.stage_recipes("tiny", 100, 0, reference=D.PRESETS["tiny"].reference) == preset
    none = D.stage_recipes("tiny", 100, 0, reference=0)
    assert all(none[f] != preset[f] for f in preset)


def test_the_demo_reruns_the_changed_stages_in_cleared_folders(monkeypatch, tmp_path: Path):
    runs = []

    def fake_steps(out, preset, n, seed, workers, precision="auto", reference=None):
        def step(folder):
            def run(path):
                runs.append(folder)
                assert not (path / "stale.txt").exists(), f"{path} was not cleared"
                (path / "out.txt").write_text(folder)
                (path / "stale.txt").write_text("from this run")
                if folder == "report":
                    (path / "metrics.json").write_text(json.dumps({}))
            run.__name__ = folder.replace("-", "_")
            return D.Step(folder, folder, run, ["out.txt"])
        return [step(f) for f in ("data", "pretrain-spectrum", "align", "report")]

    monkeypatch.setattr(D, "build_steps", fake_steps)
    monkeypatch.setattr(D, "summary_text", lambda metrics, out: "")
    D.run_demo(tmp_path, "tiny")
    D.run_demo(tmp_path, "tiny")                     # finished: nothing runs again
    assert runs == ["data", "pretrain-spectrum", "align", "report"]
    _with_spectrum_override(monkeypatch, "objective.views.noise_max=2")
    D.run_demo(tmp_path, "tiny")                     # the spectrum recipe changed
    assert runs[4:] == ["pretrain-spectrum", "align", "report"]
    assert (tmp_path / "data" / "stale.txt").exists()          # the survey is kept
