"""The report answers "is it good?": data origin from provenance, bootstrap intervals, budgets
beside baseline rows, reference rows, morphology against the majority class, and figures with
colour bars and no overlapping text."""
from __future__ import annotations

import numpy as np
import pytest

from galclip.eval import plots
from galclip.eval.references import budget, data_origin, published_rows
from galclip.eval.report import data_line, findings, morphology_vs_majority, render_markdown, tables
from galclip.eval.uncertainty import bootstrap_intervals, wilson_interval
from test_eval_report import PROPS, metrics, result


def test_data_origin_comes_from_the_provenance():
    sim = {"data": {"provenance": {"command": "galclip simulate --n 240 --out d", "inputs": []}}}
    real = {"data": {"provenance": {"command": "galclip build-dataset --spectra a.fits",
                                    "inputs": [{"path": "coadd-1.fits"}]}}}
    assert data_origin(sim)[0] == "simulated" and "SIMULATED" in data_origin(sim)[1]
    assert data_origin(real)[0] == "real" and "coadd-1.fits" in data_origin(real)[1]
    assert data_origin({"data": {}})[0] == "unknown"
    assert data_origin({"data": {"provenance": {"command": "test"}}})[0] == "unknown"
    m = metrics()
    m["provenance"]["data"]["provenance"] = sim["data"]["provenance"]
    assert "simulated galaxies and is not comparable" in data_line(m)
    assert render_markdown(m, [], __import__("pathlib").Path(".")).count("SIMULATED") == 1


def test_bootstrap_interval_covers_the_value_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        y = rng.normal(size=(n, 2))
        pred = y + 0.7 * rng.normal(size=(n, 2))
        iv = bootstrap_intervals(y, {"row": pred}, ["redshift", "log_mstar"], n_boot=400)["row"]
        r2 = 1 - np.sum((y[:, 0] - pred[:, 0]) ** 2) / np.sum((y[:, 0] - y[:, 0].mean()) ** 2)
        lo, hi = iv["redshift"]["r2"]
        assert lo < r2 < hi
        assert iv["redshift"]["sigma_nmad"][0] < iv["redshift"]["sigma_nmad"][1]
        assert iv["mean_property_r2"] == iv["log_mstar"]["r2"]  # one non-redshift property
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2.5  # ~ 1/sqrt(n): 4x the galaxies, half the width


def test_wilson_interval():
    lo, hi = wilson_interval(0.8, 100)
    assert lo < 0.8 < hi and hi - lo == pytest.approx(2 * np.sqrt(0.8 * 0.2 / 100), rel=0.05)
    assert wilson_interval(1.0, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0.5, 0) is None


def _with_intervals_and_chance():
    m = metrics()
    m["results"].append(result("majority class", "—", "chance", [float("nan")] * 3,
                               {"morph_bar": {"accuracy": 0.85, "f1_macro": 0.45, "n": 100},
                                "morph_edge_on": {"accuracy": 0.6, "f1_macro": 0.4, "n": 100}}))
    m["results"].append(result("MLP", "Photometry", "supervised", [0.85, 0.5, 0.3]))
    m["results"].append({**result("resnet18", "Image", "supervised", [0.3, 0.2, 0.1]),
                         "budget": "64 galaxies, 1 epoch(s)"})
    m["results"][0]["properties"]["redshift"]["r2"] = 0.5
    m["intervals"] = {"zero-shot:galclip k-NN:Image": {"redshift": {"r2": [0.42, 0.58]}},
                      "supervised:MLP:Photometry": {"redshift": {"r2": [0.55, 0.90]}}}
    return m


def test_tables_show_intervals_budgets_and_the_majority_class_verdict():
    m = _with_intervals_and_chance()
    t = tables(m)
    header, rows = t["main"]
    assert header[-1] == "Budget"
    assert rows[0][3] == "0.500 [0.42, 0.58]"
    assert rows[-1][-1] == "64 galaxies, 1 epoch(s)"
    _, mrows = morphology_vs_majority(m)
    verdict = {r[0]: r[-1] for r in mrows}
    assert verdict["bar"].startswith("NO model")  # 0.80 < majority 0.85
    assert verdict["edge_on"] == "beats the majority class"  # 0.90 vs 0.60, n = 100
    text = " ".join(findings(m))
    assert "on bar no model beats always answering the majority class" in text
    assert "intervals [0.42, 0.58] and [0.55, 0.90] overlap" in text
    assert "ResNet18 trained with the labels on the same cutouts (training budget: 64 galaxies, " \
           "1 epoch(s); a lower bound" in text


def test_budget_is_derived_from_the_config_when_the_row_has_none():
    prov = {"config": {"baselines": {"image": {"epochs": 3, "max_train": 500}},
                       "probe": {"epochs": 200}},
            "model": {"run_config": {"trainer": {"max_epochs": 30}}, "training": {"global_step": 900}}}
    assert budget({"type": "supervised", "model": "resnet18", "source": "Image", "n_train": 480},
                  prov) == "480 galaxies, 3 epoch(s)"
    assert budget({"type": "zero-shot", "model": "galclip k-NN"}, prov) == "aligned 30 epoch(s), 900 steps"
    assert "200 epochs" in budget({"type": "supervised", "model": "MLP"}, prov)


def test_reference_rows_are_marked_as_real_data_figures():
    m = metrics()
    m["references"] = published_rows() + [{"source": "Spectrum", "model": "template fit", "type":
                                           "classical", "redshift_r2": 0.85, "n": 50,
                                           "basis": "this dataset, first 50 test spectra"}]
    header, rows = tables(m)["references"]
    assert all("published, real data" in r[-1] for r in rows[:-1])
    assert rows[-1][3] == "0.850"
    assert "template fit reaches redshift R² 0.850 on 50" in " ".join(findings(m))


def _texts(fig):
    from matplotlib.text import Text

    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and t.get_alpha() != 0:
            out.append((t.get_text(), t.get_window_extent(r)))
    return out


def assert_no_overlapping_text(fig):
    boxes = _texts(fig)
    clashes = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:]
               if ba.overlaps(bb) and ba.width > 0 and bb.width > 0]
    assert not clashes, f"overlapping labels: {clashes[:5]}"


@pytest.fixture
def captured(monkeypatch):
    figs = []
    real = plots._save

    def keep(fig, path, dpi):
        assert_no_overlapping_text(fig)
        figs.append(fig)
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "_save", keep)
    return figs


@pytest.mark.slow
def test_figures_have_colour_bars_and_no_overlapping_text(tmp_path, captured):
    rng = np.random.default_rng(0)
    curves = {src: {f: {**{p: float(rng.uniform(0, 1)) for p in PROPS}, "n_train": 5}
                    for f in ("0.01", "0.1", "1")}
              for src in ("galclip image", "galclip spectrum", "photometry MLP")}
    plots.label_efficiency(curves, PROPS, tmp_path / "le.png", 40)
    y = rng.normal(size=(300, 3))
    m = {p: {"r2": 0.5, "rmse": 0.1, "sigma_nmad": 0.01, "bias": 0.0, "eta_0.15": 0.0} for p in PROPS}
    plots.predicted_vs_true(y, y + 0.3 * rng.normal(size=y.shape), PROPS, m, "t", tmp_path / "p.png", 40)
    plots.embedding_map(rng.normal(size=(200, 2)), {"redshift": rng.uniform(0, 1, 200)}, "map",
                        tmp_path / "m.png", 40)
    for fig in captured[1:]:  # predicted-vs-true and the map: one colour bar per panel
        cbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(cbars) == len(fig.axes) // 2 >= 1


def test_gallery_spectra_are_smoothed_rest_frame_with_lines(tmp_path, captured):
    from galclip import conventions as C

    wave = C.wavelength_grid()
    z = 0.2
    flux = 1 + 20 * np.exp(-0.5 * ((wave - 6564.6 * (1 + z)) / 2) ** 2)
    ivar = np.ones_like(flux)
    ivar[100:200] = 0
    q = {"image": np.ones((3, 152, 152)) * 0.01, "z": z,
         "matches": [{"flux": flux, "ivar": ivar, "z": z, "sim": 0.9, "is_match": True}]}
    plots.image_to_spectra([q], tmp_path / "g.png", 40)
    ax = captured[0].axes[1]
    x, yv = ax.lines[0].get_data()
    assert x[0] == pytest.approx(wave[0] / (1 + z))  # rest frame
    assert np.isnan(yv[110:190]).all()  # no good pixel: a gap, not zeros
    assert 12 < np.nanmax(yv) < 16  # smoothed: 1 + 100 A of line flux over 9 x 0.8 A (raw: 21)
    marked = [ln.get_xdata()[0] for ln in ax.lines[1:]]
    assert any(abs(v - 6564.6) < 1 for v in marked)
