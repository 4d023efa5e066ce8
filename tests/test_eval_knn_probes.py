"""k-NN regression, MLP probes and the task runners on small synthetic embeddings."""
from __future__ import annotations

import numpy as np
import pytest

from galclip.eval import tasks
from galclip.eval.knn import KNNRegressor, knn_predict
from galclip.eval.probes import MLPProbe, ProbeConfig, label_efficiency, subsample

FAST = ProbeConfig(epochs=40, patience=8, batch_size=128)
NAMES = ["redshift", "log_mstar"]


def synthetic(n: int, seed: int, dim: int = 8):
    """Embeddings whose first two axes encode the labels (plus noise), two 'modalities'."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.0, 1.0, n)
    m = rng.uniform(9.0, 11.5, n)
    mix = np.random.default_rng(99).normal(size=(2, dim))  # every axis carries both labels
    base = np.stack([z * 3, (m - 10) * 2], 1) @ mix + 5.0
    image = base + rng.normal(0, 0.05, (n, dim))
    spectrum = base + rng.normal(0, 0.05, (n, dim))
    morph = (z > 0.5).astype(np.int64)
    return {"image": image, "spectrum": spectrum}, np.stack([z, m], 1), {"morph_featured": morph}


def test_knn_by_hand_in_one_dimension():
    x = np.array([[0.0], [1.0], [3.0]])
    y = np.array([0.0, 10.0, 30.0])
    reg = KNNRegressor(k=2, standardize=False).fit(x, y)
    # query 2: neighbours 1 and 3 at distance 1 each -> 20; query 0.25: weights 4 and 4/3
    np.testing.assert_allclose(reg.predict([[2.0], [0.25]]), [20.0, (4 * 0 + 10 * 4 / 3) / (16 / 3)])
    assert reg.predict([[1.0]])[0] == 10.0  # an exact match takes that point's value


def test_knn_matches_scikit_learn_distance_weighting():
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    xtr, ytr, xte = rng.normal(size=(200, 5)) * [1, 10, 100, 1, 1], rng.normal(size=200), \
        rng.normal(size=(30, 5))
    sc = StandardScaler().fit(xtr)
    ref = KNeighborsRegressor(16, weights="distance").fit(sc.transform(xtr), ytr)
    np.testing.assert_allclose(knn_predict(xtr, ytr, xte, k=16), ref.predict(sc.transform(xte)))


def test_knn_standardizes_with_training_statistics_only():
    emb, y, _ = synthetic(300, 0)
    reg = KNNRegressor(k=8).fit(emb["image"][:200], y[:200])
    query = emb["image"][200:]
    together = reg.predict(query)
    one_by_one = np.concatenate([reg.predict(query[i:i + 1]) for i in range(len(query))])
    np.testing.assert_allclose(together, one_by_one)  # no statistic of the query set is used


def test_knn_skips_missing_labels_per_output():
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([[1.0, np.nan], [3.0, 5.0], [5.0, 7.0]])
    pred = KNNRegressor(k=3, standardize=False).fit(x, y).predict([[0.5], [0.0]])
    # query 0.5: weights 2, 2, 2/3; the NaN label drops out of the second output only
    assert pred[0, 0] == pytest.approx((1 * 2 + 3 * 2 + 5 * 2 / 3) / (14 / 3))
    assert pred[0, 1] == pytest.approx((5 * 2 + 7 * 2 / 3) / (8 / 3))
    # query 0.0 sits on a point whose second label is missing: its neighbours stand in
    assert pred[1, 0] == 1.0 and pred[1, 1] == pytest.approx((5 * 1 + 7 * 0.5) / 1.5)


def _zero_shot_predictions(run, train, y_train, test, y_test):
    _, preds = run(train, y_train, test, y_test, NAMES, k=16)
    return preds


def leaky_knn_results(train, y_train, test, y_test, names, k=64):
    """A planted leak: neighbours drawn from train *and test* rows, test labels included."""
    both = {m: np.concatenate([train[m], test[m]]) for m in train}
    return tasks.knn_results(both, np.concatenate([y_train, y_test]), test, y_test, names, k)


@pytest.mark.parametrize("run, leaks", [(tasks.knn_results, False), (leaky_knn_results, True)])
def test_zero_shot_never_sees_test_labels(run, leaks):
    emb, y, _ = synthetic(400, 1)
    tr, te = slice(0, 300), slice(300, None)
    train, test = {m: e[tr] for m, e in emb.items()}, {m: e[te] for m, e in emb.items()}
    honest = _zero_shot_predictions(run, train, y[tr], test, y[te])
    scrambled = y[te][::-1] + 100.0  # test labels replaced by nonsense
    changed = _zero_shot_predictions(run, train, y[tr], test, scrambled)
    same = all(np.allclose(honest[k], changed[k]) for k in honest)
    assert same != leaks  # the honest runner is unaffected; the planted leak is caught


def test_zero_shot_results_score_every_source_and_redshift_metrics():
    emb, y, _ = synthetic(400, 2)
    results, preds = tasks.knn_results({m: e[:300] for m, e in emb.items()}, y[:300],
                                       {m: e[300:] for m, e in emb.items()}, y[300:], NAMES, k=16)
    assert [r["source"] for r in results] == ["Image", "Spectrum", "Spectrum→Image"]
    for r in results:
        assert r["properties"]["redshift"]["r2"] > 0.9  # labels are encoded in the embedding
        assert {"sigma_nmad", "bias", "eta_0.15", "eta_0.05"} <= set(r["properties"]["redshift"])
        assert preds[r["id"]].shape == (100, 2)


def test_probe_regression_learns_and_is_reproducible():
    emb, y, _ = synthetic(400, 3)
    fit = lambda: MLPProbe("regression", FAST).fit(emb["image"][:300], y[:300]).predict(
        emb["image"][300:])
    a, b = fit(), fit()
    np.testing.assert_array_equal(a, b)
    assert a.shape == (100, 2)
    r2 = 1 - ((a[:, 0] - y[300:, 0]) ** 2).sum() / ((y[300:, 0] - y[300:, 0].mean()) ** 2).sum()
    assert r2 > 0.8


def test_probe_architecture_is_two_hidden_layers_of_64_with_dropout():
    import torch.nn as nn

    probe = MLPProbe("regression", ProbeConfig(epochs=1)).fit(np.ones((30, 5)) * np.arange(30)[:, None],
                                                              np.arange(30.0))
    linear = [m for m in probe.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(5, 64), (64, 64), (64, 1)]
    assert [m.p for m in probe.net if isinstance(m, nn.Dropout)] == [0.1, 0.1]


@pytest.mark.slow
def test_morphology_probe_reports_accuracy_and_f1():
    emb, y, morph = synthetic(400, 4)
    results, _ = tasks.probe_results({"image": emb["image"][:300]}, y[:300],
                                     {"image": emb["image"][300:]}, y[300:], NAMES, FAST,
                                     morph_train={k: v[:300] for k, v in morph.items()},
                                     morph_test={k: v[300:] for k, v in morph.items()})
    m = results[0]["morphology"]["morph_featured"]
    assert m["accuracy"] > 0.85 and 0 < m["f1_macro"] <= 1 and m["n"] == 100


def test_label_efficiency_uses_the_requested_fractions():
    emb, y, _ = synthetic(500, 5)
    curve = label_efficiency(emb["image"][:400], y[:400], emb["image"][400:], y[400:], NAMES,
                             fractions=(0.05, 1.0), cfg=FAST)
    assert [curve[f]["n_train"] for f in ("0.05", "1")] == [20, 400]
    assert curve["1"]["redshift"] > 0.8
    np.testing.assert_array_equal(subsample(400, 0.05, 0), subsample(400, 0.05, 0))


def test_neighbour_agreement_is_high_for_informative_embeddings():
    emb, y, _ = synthetic(300, 6)
    agree = tasks.neighbour_agreement(emb["image"], y, NAMES)
    noise = tasks.neighbour_agreement(np.random.default_rng(0).normal(size=(300, 8)), y, NAMES)
    assert agree["redshift"] > 0.8 and noise["redshift"] < 0.3


def test_majority_class_is_the_morphology_chance_level():
    res = tasks.majority_class_result({"morph_bar": np.array([0, 0, 1, -1])},
                                      {"morph_bar": np.array([0, 1, 1, 0, -1])})
    assert res["model"] == "majority class" and res["properties"] == {}
    assert res["morphology"]["morph_bar"]["accuracy"] == 0.5  # predicts 0; 2 of 4 labelled rows


def test_spectrum_baseline_sees_where_a_line_is():
    """Redshift moves lines in wavelength: the conv+attention net must not be shift-blind."""
    import torch

    from galclip.eval.baselines import SpectrumConvAttention

    torch.manual_seed(0)
    net = SpectrumConvAttention(channels=8, depth=1, num_heads=2).eval()
    x = torch.zeros(2, 2, 7781)
    x[:, 1] = 1.0                    # every pixel valid
    x[0, 0, 1984:1994] = 5.0         # the same line at two wavelengths (64-pixel shift multiple)
    x[1, 0, 5952:5962] = 5.0
    with torch.no_grad():
        out = net(x, torch.zeros(2, 2))
    assert out.shape == (2, 10) and not torch.allclose(out[0], out[1], atol=1e-4)


@pytest.mark.slow
def test_log_lambda_conv_baseline_learns_where_a_line_is_and_stops_when_validation_is_flat():
    """The 1-D ResNet baseline, trained with labels, reads a line's position (a redshift) off
    synthetic spectra; with pure-noise labels its validation loss stops improving and the
    patience rule ends training before the epoch budget, and the budget string says so."""
    import torch

    from galclip import conventions as C
    from galclip.eval.baselines import (
        LogLambdaConv,
        SupervisedBaseline,
        SupervisedConfig,
        preprocess_log_spectra,
    )

    rng = np.random.default_rng(0)
    n = 200
    z = rng.uniform(0.0, 0.4, n)
    wave = C.wavelength_grid()
    flux = 1.0 + 0.1 * rng.standard_normal((n, C.N_WAVE))
    flux += 8.0 * np.exp(-0.5 * ((wave[None] - 5007.0 * (1 + z[:, None])) / 3.0) ** 2)
    ivar = np.full_like(flux, 100.0)
    x = preprocess_log_spectra(flux.astype(np.float32), ivar.astype(np.float32))
    torch.manual_seed(0)
    small = {"channels": [8, 16, 16], "embed_dim": 32}
    cfg = SupervisedConfig(epochs=12, batch_size=32, lr=3e-3, patience=4)
    net = SupervisedBaseline(LogLambdaConv(**small), cfg)
    net.fit({k: v[:160] for k, v in x.items()}, z[:160, None], {})
    pred, _ = net.predict({k: v[160:] for k, v in x.items()})
    assert np.corrcoef(pred[:, 0], z[160:])[0, 1] > 0.9
    assert "ran" in net.budget() and "best epoch" in net.budget()
    noise = SupervisedBaseline(LogLambdaConv(**small), SupervisedConfig(epochs=20, batch_size=32, patience=2))
    noise.fit({k: v[:120] for k, v in x.items()}, rng.standard_normal((120, 1)), {})
    assert noise.record.epochs_run < 20 and "flat for 2 epochs" in noise.budget()


def test_image_baseline_augment_conserves_flux_and_evaluates_the_centre_crop():
    """The conv image baseline's training views are flux-conserving (jittered crop + symmetries of
    the square: a source inside every possible crop keeps its total flux); evaluation is the
    plain centre crop, so predictions do not depend on chance."""
    import torch

    from galclip.eval.baselines import ImageAugment

    aug = ImageAugment(size=16, shift=3)
    x = torch.zeros(8, 3, 22, 22)
    x[:, :, 9:13, 8:12] = torch.rand(8, 3, 4, 4) + 0.5       # compact source, inside any crop
    torch.manual_seed(0)
    views = aug.train({"x": x})["x"]
    assert views.shape == (8, 3, 16, 16)
    assert torch.allclose(views.sum((-2, -1)), x.sum((-2, -1)), atol=1e-5)
    moved = [not torch.equal(views[i], x[i, :, 3:19, 3:19]) for i in range(8)]
    assert any(moved)                                       # the views differ from the centre crop
    assert torch.equal(aug.eval({"x": x})["x"], x[:, :, 3:19, 3:19])


@pytest.mark.slow
def test_augmented_conv_image_baseline_learns_flux_and_reports_its_augmentation():
    """Trained on jittered, rotated views of raw cutouts, the conv image baseline still reads a
    source's brightness (a label the augmentations leave unchanged) and predicts reproducibly."""
    import torch

    from galclip.eval.baselines import ConvImage, ImageAugment, SupervisedBaseline, SupervisedConfig

    rng = np.random.default_rng(0)
    n, size, shift = 160, 32, 4
    amp = rng.uniform(1.0, 20.0, n)
    yy, xx = np.mgrid[:size + 2 * shift, :size + 2 * shift] - (size / 2 + shift)
    prof = np.exp(-0.5 * (yy ** 2 + xx ** 2) / 2.0 ** 2)
    img = amp[:, None, None, None] * prof[None, None] * np.ones((1, 3, 1, 1))
    img = (img + 0.05 * rng.standard_normal(img.shape)).astype(np.float32)
    x = {"x": torch.tensor(img)}
    y = np.log(amp)[:, None]
    torch.manual_seed(0)
    backbone = ConvImage(img_size=size, channels=[8, 8, 16, 16], layers=[1, 1, 1, 1], embed_dim=16,
                         aperture_radii=[2.0, 4.0])
    net = SupervisedBaseline(backbone, SupervisedConfig(epochs=20, batch_size=32, lr=3e-3),
                             augment=ImageAugment(size, shift))
    net.fit({"x": x["x"][:120]}, y[:120], {})
    p1, _ = net.predict({"x": x["x"][120:]})
    p2, _ = net.predict({"x": x["x"][120:]})
    assert np.array_equal(p1, p2)
    assert np.corrcoef(p1[:, 0], y[120:, 0])[0, 1] > 0.9
    assert "±4 px jitter" in net.budget()


@pytest.mark.slow
def test_spectrum_baseline_augment_keeps_bad_pixels_bad_and_evaluates_the_observed_spectrum():
    """Training views of the log-λ baseline: noisier (ivar lowered), some spans lost, bad pixels
    still bad; evaluation sees the spectrum unchanged. With the views, the 1-D ResNet baseline still
    reads a line's position off synthetic spectra."""
    import torch

    from galclip import conventions as C
    from galclip.eval.baselines import (
        LogLambdaConv,
        SpectrumAugment,
        SupervisedBaseline,
        SupervisedConfig,
        preprocess_log_spectra,
    )

    aug = SpectrumAugment(noise_max=1.0, n_spans=2, span_len=10)
    flux, ivar = torch.ones(16, 200), torch.full((16, 200), 4.0)
    ivar[:, 50:60] = 0.0
    torch.manual_seed(0)
    v = aug.train({"flux": flux, "ivar": ivar})
    assert (v["ivar"][:, 50:60] == 0).all() and (v["ivar"] <= ivar).all()
    assert ((v["ivar"] == 0).sum(1) > 10).all()                     # each view lost spans
    assert not torch.equal(v["flux"], flux)
    same = aug.eval({"flux": flux, "ivar": ivar})
    assert torch.equal(same["flux"], flux) and torch.equal(same["ivar"], ivar)

    rng = np.random.default_rng(1)
    n = 200
    z = rng.uniform(0.0, 0.4, n)
    wave = C.wavelength_grid()
    f = 1.0 + 0.1 * rng.standard_normal((n, C.N_WAVE))
    f += 8.0 * np.exp(-0.5 * ((wave[None] - 5007.0 * (1 + z[:, None])) / 3.0) ** 2)
    x = preprocess_log_spectra(f.astype(np.float32), np.full_like(f, 100.0, dtype=np.float32))
    torch.manual_seed(0)
    net = SupervisedBaseline(LogLambdaConv(channels=[8, 16, 16], embed_dim=32),
                             SupervisedConfig(epochs=12, batch_size=32, lr=3e-3), augment=SpectrumAugment())
    net.fit({k: t[:160] for k, t in x.items()}, z[:160, None], {})
    pred, _ = net.predict({k: t[160:] for k, t in x.items()})
    assert np.corrcoef(pred[:, 0], z[160:])[0, 1] > 0.9
    assert "lost spans" in net.budget()


@pytest.mark.slow
def test_baseline_lowers_its_learning_rate_on_a_plateau_before_stopping():
    """reduce-on-plateau: with pure-noise labels the validation loss is flat, the rate drops by
    lr_factor every lr_patience flat epochs, and training stops after patience flat epochs."""
    import torch

    from galclip.eval.baselines import LogLambdaConv, SupervisedBaseline, SupervisedConfig

    rng = np.random.default_rng(0)
    x = {"flux": torch.tensor(rng.standard_normal((100, 1024)), dtype=torch.float32),
         "ivar": torch.ones(100, 1024)}
    torch.manual_seed(0)
    cfg = SupervisedConfig(epochs=30, batch_size=25, patience=4, lr_patience=2, lr_factor=0.5)
    net = SupervisedBaseline(LogLambdaConv(channels=[8, 8, 8], embed_dim=8), cfg)
    net.fit(x, rng.standard_normal((100, 1)), {})
    assert net.record.epochs_run < 30 and net.record.lr_drops >= 2
    assert net.record.lr_scale == 0.5 ** net.record.lr_drops
    assert "learning rate ×0.5 after 2 flat epochs" in net.budget()


def test_the_spectrum_baselines_view_noise_follows_its_config():
    """``baselines.spectrum.noise_max`` reaches the baseline's training views (and its budget
    line); a negative value is refused naming the field."""
    import torch

    from galclip.config import ConfigError
    from galclip.eval.evaluate import _baseline_augment
    from galclip.eval.schema import evaluation_config

    cfg = evaluation_config("cpu", ["baselines.spectrum.noise_max=3"])
    aug = _baseline_augment("spectrum", cfg.baselines.spectrum)
    assert aug.noise_max == 3.0 and "noise up to 3σ" in aug.describe()
    torch.manual_seed(0)
    flux, ivar = torch.zeros(4000, 8), torch.ones(4000, 8)
    noisy = aug.train({"flux": flux, "ivar": ivar})["flux"]
    assert 1.5 < float(noisy.std()) < 2.0                  # a ~ U(0, 3): rms sqrt(3) = 1.73
    with pytest.raises(ConfigError, match="baselines.spectrum.noise_max"):
        evaluation_config("cpu", ["baselines.spectrum.noise_max=-1"])
