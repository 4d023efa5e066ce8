"""The planted-anomaly table in the evaluation report: read from the benchmark's file, checked."""
from __future__ import annotations

import json

import pytest

from galclip.eval.injection import SCORES, read_injection, table
from galclip.storage import sha256_file


def _injection(path, model_sha: str, **change):
    row = {"n": 18, **{s: {"auroc": 0.9, "precision_top1pct": 0.6} for s in SCORES}}
    obj = {"args": {"data": "sim11", "fraction": 0.03, "seed": 0}, "model_sha256": model_sha,
           "kinds": {"swap": {**row, "mismatch_score": {"auroc": 0.998,
                                                         "precision_top1pct": 1.0}},
                     "trail": row}}
    obj.update(change)
    path.write_text(json.dumps(obj))
    return path


def test_report_shows_the_planted_anomaly_table(tmp_path):
    from galclip.eval.report import render_html, render_markdown
    from test_eval_report import metrics

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    inj = read_injection(_injection(tmp_path / "i.json", sha256_file(model)), sha256_file(model))
    head, rows = table(inj)
    assert rows[0][:3] == ["swap", "18", "0.998 / 1.00"] and rows[1][0] == "trail"
    m = {**metrics(), "injection": inj}
    assert "Planted anomalies" in render_markdown(m, [], tmp_path)
    assert "0.998 / 1.00" in render_html(m, [])
    assert "Planted anomalies" not in render_markdown(metrics(), [], tmp_path)


@pytest.mark.parametrize("change, field", [
    ({"model_sha256": "f" * 64}, "model_sha256"),
    ({"kinds": {}}, "kinds"),
    ({"kinds": {"trail": {"n": 18, "mismatch_score": {"auroc": 0.5}}}},
     "kinds.trail.mismatch_score.precision_top1pct"),
])
def test_injection_files_made_otherwise_are_refused_naming_the_field(tmp_path, change, field):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    path = _injection(tmp_path / "i.json", sha256_file(model), **change)
    with pytest.raises(ValueError, match=f"i.json: field '{field}'"):
        read_injection(path, sha256_file(model))


def test_cli_refuses_a_bad_injection_file_before_any_work(tmp_path, capsys):
    from galclip.cli import main

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    (tmp_path / "bad.json").write_text("{not json")
    base = ["evaluate", "--model", str(model), "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "out")]
    for inj, msg in ((tmp_path / "bad.json", "not a JSON file"),
                     (tmp_path / "none.json", "no such file"),
                     (_injection(tmp_path / "other.json", "0" * 64), "model_sha256")):
        assert main([*base, "--injection", str(inj)]) == 2
        err = capsys.readouterr().err
        assert msg in err and inj.name in err and "Traceback" not in err
