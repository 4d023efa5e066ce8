"""Evaluation metrics against values computed by hand on tiny arrays."""
from __future__ import annotations

import numpy as np
import pytest

from galclip.eval import metrics as M

Z_TRUE = np.array([0.0, 0.5, 1.0, 0.2])
Z_PRED = np.array([0.1, 0.5, 1.4, 0.2])
# dz = (pred - true) / (1 + true) = [0.1, 0, 0.2, 0]


def test_r2_by_hand():
    # mean 0.425; SS_tot = 0.5675; SS_res = 0.01 + 0.16 = 0.17
    assert M.r2_score(Z_TRUE, Z_PRED) == pytest.approx(1 - 0.17 / 0.5675)
    assert M.r2_score(Z_TRUE, Z_TRUE) == 1.0
    assert M.r2_score(Z_TRUE, np.full(4, Z_TRUE.mean())) == pytest.approx(0.0)


def test_sigma_nmad_bias_and_outliers_by_hand():
    # median(dz) = 0.05; |dz - 0.05| = [0.05, 0.05, 0.15, 0.05] -> median 0.05
    assert M.sigma_nmad(Z_TRUE, Z_PRED) == pytest.approx(1.4826 * 0.05)
    assert M.bias(Z_TRUE, Z_PRED) == pytest.approx(0.3 / 4)
    assert M.outlier_fraction(Z_TRUE, Z_PRED, 0.15) == 0.25  # only dz = 0.2
    assert M.outlier_fraction(Z_TRUE, Z_PRED, 0.05) == 0.5   # dz = 0.1 and 0.2
    m = M.redshift_metrics(Z_TRUE, Z_PRED)
    assert m["eta_0.15"] == 0.25 and m["eta_0.05"] == 0.5 and m["n"] == 4
    assert m["rmse"] == pytest.approx(np.sqrt(0.17 / 4))


def test_dz_is_scaled_by_one_plus_true_redshift():
    # the same absolute error of 0.3 is an outlier at z = 0.5 (0.2) but not at z = 2 (0.1)
    assert M.outlier_fraction([0.5], [0.8], 0.15) == 1.0
    assert M.outlier_fraction([2.0], [2.3], 0.15) == 0.0


def test_non_finite_rows_are_left_out_and_counted():
    t = np.array([0.0, 0.5, np.nan, 1.0, 0.2])
    p = np.array([0.1, 0.5, 0.3, 1.4, 0.2])
    assert M.redshift_metrics(t, p)["n"] == 4
    assert M.sigma_nmad(t, p) == pytest.approx(1.4826 * 0.05)
    with pytest.raises(ValueError, match="shape"):
        M.r2_score([1.0, 2.0], [1.0])


def test_accuracy_and_macro_f1_by_hand():
    t = np.array([0, 0, 1, 1, 2, -1])  # -1: no label, ignored
    p = np.array([0, 1, 1, 1, 0, 2])
    assert M.accuracy(t, p) == pytest.approx(3 / 5)
    # F1 per class: 0 -> 2*1/(2+2) = 0.5; 1 -> 2*2/(3+2) = 0.8; 2 -> 0
    assert M.f1_macro(t, p) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    sklearn = pytest.importorskip("sklearn.metrics")
    assert M.f1_macro(t, p) == pytest.approx(sklearn.f1_score(t[:5], p[:5], average="macro"))
    assert M.classification_metrics(t, p)["n"] == 5
