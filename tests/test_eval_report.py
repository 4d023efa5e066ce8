"""The report's tables and documents, built from a hand-written metrics dict."""
from __future__ import annotations

import json

import numpy as np
import pytest

from galclip.eval import plots
from galclip.eval.report import findings, referenced_files, summary_row, tables, write_documents

PROPS = ["redshift", "log_mstar", "log_ssfr"]


def result(model, source, type_, r2s, morph=None):
    props = {p: {"r2": r} for p, r in zip(PROPS, r2s, strict=True)}
    props["redshift"].update({"sigma_nmad": 0.02, "bias": 0.001, "eta_0.15": 0.01,
                              "eta_0.05": 0.05, "n": 100})
    return {"id": f"{type_}:{model}:{source}", "source": source, "model": model, "type": type_,
            "properties": props, "morphology": morph or {}}


def metrics():
    return {
        "provenance": {"model": {"path": "m.safetensors", "sha256": "ab" * 32},
                       "data": {"path": "data/sim", "n_rows": 1000}, "galclip_version": "0.1.0",
                       "created": "2026-11-28T00:00:00+00:00", "config": {"seed": 0},
                       "command": "galclip evaluate"},
        "splits": {"train": 800, "test": 100}, "properties": PROPS,
        "results": [result("galclip k-NN", "Image", "zero-shot", [0.9, 0.6, 0.4]),
                    result("galclip MLP", "Image", "few-shot", [0.95, 0.7, float("nan")],
                           {"morph_bar": {"accuracy": 0.8, "f1_macro": 0.7, "n": 100},
                            "morph_edge_on": {"accuracy": 0.9, "f1_macro": 0.85, "n": 100}})],
        "label_efficiency": {}, "retrieval": {}, "notes": ["a note"],
    }


def test_summary_row_follows_the_astroclip_table():
    rows = [summary_row(r, PROPS) for r in metrics()["results"]]
    assert rows[0]["redshift_r2"] == 0.9
    assert rows[0]["mean_property_r2"] == pytest.approx(0.5)  # mean of the non-redshift R²
    assert rows[0]["morphology_accuracy"] is None
    assert rows[1]["mean_property_r2"] == pytest.approx(0.7)  # a NaN property is left out
    assert rows[1]["morphology_accuracy"] == pytest.approx(0.85)


def test_tables_format_missing_values_as_dashes():
    header, rows = tables(metrics())["main"]
    assert header[:6] == ["Source", "Model", "Type", "Redshift R²", "Mean property R²",
                          "Morphology accuracy"]
    assert rows[0][:6] == ["Image", "galclip k-NN", "zero-shot", "0.900", "0.500", "—"]
    assert rows[1][-1] == "—"  # log_ssfr R² is NaN
    _, zrows = tables(metrics())["redshift"]
    assert zrows[0][3:5] == ["0.9000", "0.0200"]


def test_documents_are_written_and_strict_json(tmp_path):
    fig = plots.label_efficiency({"a": {"0.1": {"redshift": 0.5, "log_mstar": 0.4, "log_ssfr": 0.1,
                                                "n_train": 10}}}, PROPS, tmp_path / "figures" / "le.png", 30)
    write_documents(tmp_path, metrics(), [("Label efficiency", fig)])
    m = json.loads((tmp_path / "metrics.json").read_text())  # NaN -> null: strict JSON
    assert m["results"][1]["properties"]["log_ssfr"]["r2"] is None
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in page and referenced_files(page) == []
    assert "![Label efficiency](figures/le.png)" in (tmp_path / "report.md").read_text()
    with pytest.raises(FileNotFoundError, match="gone.png"):
        write_documents(tmp_path, metrics(), [("gone", tmp_path / "gone.png")])


def test_findings_say_where_the_image_falls_short_and_why():
    m = metrics()
    m["results"] = [result("galclip k-NN", "Image", "zero-shot", [0.33, 0.5, 0.5]),
                    result("unaligned k-NN", "Image", "zero-shot", [0.13, 0.1, 0.1]),
                    result("resnet18", "Image", "supervised", [0.35, 0.5, 0.5]),
                    result("MLP", "Photometry", "supervised", [0.46, 0.6, 0.6]),
                    result("galclip k-NN", "Spectrum", "zero-shot", [0.42, 0.6, 0.6])]
    m["retrieval"] = {"whole_set": {"pool_size": 500.0, "image_to_spectrum/median_rank": 50.0,
                                    "spectrum_to_image/median_rank": 62.5}}
    image, spectrum, retrieval = findings(m)
    assert "0.330 is below the supervised photometry MLP's 0.460" in image
    assert "ResNet18" in image and "0.350" in image and "alone scores 0.130" in image
    assert spectrum == "Spectrum zero-shot redshift R² 0.420."
    assert "median rank 50 (image→spectrum) and 62 (spectrum→image) in a pool of 500" in retrieval
    assert "chance is 250, so 4.0× or more better" in retrieval
    m["results"][0] = result("galclip k-NN", "Image", "zero-shot", [0.5, 0.5, 0.5])
    assert findings(m)[0].startswith("Image zero-shot redshift R² 0.500 is at or above")
    assert findings(metrics()) == []  # nothing to compare: no sentences


def test_pca_map_and_unknown_method():
    emb = np.random.default_rng(0).normal(size=(50, 6)) * [5, 3, 1, 1, 1, 1]
    xy, method = plots.project_2d(emb, "pca")
    assert method == "pca" and xy.shape == (50, 2)
    assert np.var(xy[:, 0]) >= np.var(xy[:, 1])  # first axis carries the most variance
    with pytest.raises(ValueError, match="umap' or 'pca"):
        plots.project_2d(emb, "tsne")
