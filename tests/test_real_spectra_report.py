"""How the model reads real spectra, in the evaluation report: read from the sim-to-real
benchmark's file, checked, shown as a table and one finding."""
from __future__ import annotations

import json

import pytest

from galclip.eval.real_spectra import finding, read_real_spectra, table
from galclip.storage import sha256_file


def _summary():
    row = {"n": 5, "within_0.01": 4, "catastrophic": 0, "unfamiliar": 0, "wrong_unflagged": 1,
           "median_nn_cosine": 0.97}
    return [{"sample": "BGS", **row},
            {"sample": "LRG", **row, "within_0.01": 0, "unfamiliar": 5, "wrong_unflagged": 0},
            {"sample": "in sim range", **row, "n": 18, "within_0.01": 5, "unfamiliar": 8,
             "wrong_unflagged": 5}]


def _file(path, model_sha: str, **change):
    obj = {"catalog": "/x/catalog", "model_sha256": model_sha, "k": 16, "summary": _summary()}
    obj.update(change)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def model(tmp_path):
    m = tmp_path / "m.safetensors"
    m.write_bytes(b"weights")
    return m


def test_report_shows_the_table_and_one_finding(tmp_path, model):
    from galclip.eval.report import findings, render_html, render_markdown
    from test_eval_report import metrics

    real = read_real_spectra(_file(tmp_path / "r.json", sha256_file(model)), sha256_file(model))
    head, rows = table(real)
    assert rows[0] == ["BGS", "5", "4", "0", "0", "1"] and rows[-1][0] == "in sim range"
    line = finding(real)
    assert line.startswith("Real spectra: of 18 real DESI spectra inside the simulated redshift")
    assert "reads 5 within 0.01(1+z)" in line and "flags 8" in line and "gives 5 a wrong" in line
    m = {**metrics(), "real_spectra": real}
    assert line in findings(m)
    assert "Real DESI spectra through the simulation-trained model" in render_markdown(m, [], tmp_path)
    assert "in sim range" in render_html(m, [])
    assert not any(f.startswith("Real spectra") for f in findings(metrics()))
    assert "Real DESI spectra" not in render_markdown(metrics(), [], tmp_path)


def test_without_an_in_range_row_the_finding_reads_all_spectra(tmp_path, model):
    rows = [r for r in _summary() if r["sample"] != "in sim range"]
    rows.append({**rows[0], "sample": "all", "n": 10})
    real = read_real_spectra(_file(tmp_path / "r.json", sha256_file(model), summary=rows),
                             sha256_file(model))
    assert "of 10 real DESI spectra in all" in finding(real)


@pytest.mark.parametrize("change, field", [
    ({"model_sha256": "f" * 64}, "model_sha256"),
    ({"summary": []}, "summary"),
    ({"summary": [{"sample": "BGS", "n": 5}]}, r"summary\[0\].within_0.01"),
    ({"summary": [{"sample": "BGS", "n": 5, "within_0.01": 9, "catastrophic": 0, "unfamiliar": 0,
                   "wrong_unflagged": 0}]}, r"summary\[0\]"),
])
def test_files_made_otherwise_are_refused_naming_the_field(tmp_path, model, change, field):
    path = _file(tmp_path / "r.json", sha256_file(model), **change)
    with pytest.raises(ValueError, match=f"r.json: field '{field}"):
        read_real_spectra(path, sha256_file(model))


def test_cli_refuses_a_bad_file_before_any_work(tmp_path, model, capsys):
    from galclip.cli import main

    (tmp_path / "bad.json").write_text("{not json")
    base = ["evaluate", "--model", str(model), "--data", str(tmp_path / "data"), "--out",
            str(tmp_path / "out")]
    for path, msg in ((tmp_path / "bad.json", "not a JSON file"),
                      (tmp_path / "none.json", "no such file"),
                      (_file(tmp_path / "other.json", "0" * 64), "model_sha256")):
        assert main([*base, "--real-spectra", str(path)]) == 2
        err = capsys.readouterr().err
        assert msg in err and path.name in err and "Traceback" not in err
