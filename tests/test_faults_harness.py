"""The mechanics of benchmarks/faults.py, the long fault-injection run: how it kills, how it
tells a clean error from a traceback, and what it counts as an identical output."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faults():
    spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_trial_kills_the_command_at_its_moment(faults, tmp_path):
    rc, _, _ = faults.run([sys.executable, "-c", "import time; time.sleep(600)"], tmp_path,
                          kill_after=0.5)
    assert rc == -9
    named = [sys.executable, "-c", "import sys; sys.exit(0 if sys.argv[1].endswith('out') else 3)", "OUT"]
    rc, _, _ = faults.run(named, tmp_path / "out", kill_after=120)
    assert rc == 0                  # OUT became the output folder; finished before its moment


def test_clean_errors_tracebacks_and_other_failures_are_told_apart(faults):
    line = "galclip embed: error: /x/cat: no space left on the device (needs about 1.0 MB, ...)"
    assert faults.clean_error(2, f"progress 10%\r{line}\n") == ("clean", line)
    tb = "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n"
    assert faults.clean_error(1, tb) == ("traceback", "RuntimeError: boom")
    assert faults.clean_error(1, "killed\n")[0] == "failed"
    assert faults.clean_error(2, "no galclip line\n")[0] == "failed"


def test_evaluate_outputs_are_identical_but_for_when_and_how_they_ran(faults, tmp_path):
    metrics = {"provenance": {"created": "2026-12-06T07:00:00", "command": "galclip evaluate A",
                              "model": {"sha256": "ab"}},
               "timings_s": {"embed": 1.5}, "results": [{"r2": 0.5, "budget": "ran 2 epochs in 14 s"}],
               "references": [{"r2": 0.9, "seconds": 27.4}]}
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    runs = ((a, "07:00", "A", 1.5, 14, 27.4, 0.5), (b, "08:00", "B", 2.5, 10, 18.9, 0.5),
            (c, "07:00", "A", 1.5, 14, 27.4, 0.6))
    for folder, created, cmd, embed_s, budget_s, ref_s, r2 in runs:
        folder.mkdir()
        m = json.loads(json.dumps(metrics))
        m["provenance"].update(created=created, command=cmd)
        m["timings_s"]["embed"] = embed_s
        m["results"][0].update(r2=r2, budget=f"ran 2 epochs in {budget_s} s")
        m["references"][0]["seconds"] = ref_s
        (folder / "metrics.json").write_text(json.dumps(m))
    assert faults.digest(a, "metrics") == faults.digest(b, "metrics")       # other run, same results
    assert faults.digest(a, "metrics") != faults.digest(c, "metrics")       # one figure moved
    assert "created" not in json.dumps(faults.results_of(metrics))


def test_a_dataset_output_is_identical_only_with_the_same_shards_and_rejects(faults, tmp_path):
    def write(folder: Path, sha: str, rejects: str) -> Path:
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(
            {"shards": [{"file": "part-00000.parquet", "sha256": sha}], "created": str(folder)}))
        (folder / "rejects.csv").write_text(rejects)
        return folder

    a = write(tmp_path / "a", "11", "id,reason\n")
    assert faults.digest(a, "build") == faults.digest(write(tmp_path / "b", "11", "id,reason\n"), "build")
    assert faults.digest(a, "build") != faults.digest(write(tmp_path / "c", "12", "id,reason\n"), "build")
    assert faults.digest(a, "build") != faults.digest(write(tmp_path / "d", "11", "id,reason\n7,x\n"),
                                                      "build")
