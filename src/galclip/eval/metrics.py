"""Evaluation metrics as plain functions of arrays (no model, no I/O).

Regression: the coefficient of determination R² (as AstroCLIP, Parker et al. 2024, Table 2).
Photometric redshift, in the quantities photo-z users quote (e.g. Brammer et al. 2008, eq. 6;
Hildebrandt et al. 2010): with ``dz = (z_pred - z_true) / (1 + z_true)``,

- ``sigma_nmad = 1.4826 * median(|dz - median(dz)|)``, the normalized median absolute deviation;
- ``bias = mean(dz)``;
- ``eta_X = fraction of |dz| > X`` (catastrophic outliers at X = 0.15, and X = 0.05).

Classification: accuracy and macro-averaged F1 (mean over classes of 2PR / (P + R)).

Rows where the truth or the prediction is not finite are left out and counted in ``n``.
"""
from __future__ import annotations

import numpy as np

NMAD_SCALE = 1.4826  # makes the MAD of a Gaussian equal to its sigma
OUTLIER_THRESHOLDS = (0.15, 0.05)


def _finite_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"truth has shape {t.shape} but prediction has shape {p.shape}")
    ok = np.isfinite(t) & np.isfinite(p)
    return t[ok], p[ok]


def r2_score(y_true, y_pred) -> float:
    """1 - SS_res / SS_tot over finite pairs; NaN when fewer than two rows or no variance."""
    t, p = _finite_pair(y_true, y_pred)
    ss_tot = float(np.sum((t - t.mean()) ** 2)) if len(t) else 0.0
    if len(t) < 2 or ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def delta_z(z_true, z_pred) -> np.ndarray:
    """Redshift error scaled by (1 + z_true), over finite pairs."""
    t, p = _finite_pair(z_true, z_pred)
    return (p - t) / (1.0 + t)


def sigma_nmad(z_true, z_pred) -> float:
    dz = delta_z(z_true, z_pred)
    if len(dz) == 0:
        return float("nan")
    return NMAD_SCALE * float(np.median(np.abs(dz - np.median(dz))))


def bias(z_true, z_pred) -> float:
    dz = delta_z(z_true, z_pred)
    return float(np.mean(dz)) if len(dz) else float("nan")


def outlier_fraction(z_true, z_pred, threshold: float = 0.15) -> float:
    """Fraction of galaxies with |z_pred - z_true| / (1 + z_true) > threshold."""
    dz = delta_z(z_true, z_pred)
    return float(np.mean(np.abs(dz) > threshold)) if len(dz) else float("nan")


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """R², RMSE and the number of finite pairs."""
    t, p = _finite_pair(y_true, y_pred)
    rmse = float(np.sqrt(np.mean((t - p) ** 2))) if len(t) else float("nan")
    return {"r2": r2_score(t, p), "rmse": rmse, "n": int(len(t))}


def redshift_metrics(z_true, z_pred) -> dict[str, float]:
    """R², RMSE, sigma_NMAD, bias and outlier fractions eta_0.15 and eta_0.05."""
    out = regression_metrics(z_true, z_pred)
    out.update(sigma_nmad=sigma_nmad(z_true, z_pred), bias=bias(z_true, z_pred))
    for thr in OUTLIER_THRESHOLDS:
        out[f"eta_{thr:g}"] = outlier_fraction(z_true, z_pred, thr)
    return out


def _valid_labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"truth has shape {t.shape} but prediction has shape {p.shape}")
    ok = t >= 0  # a negative class label marks "question not applicable / no label"
    return t[ok].astype(np.int64), p[ok].astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct labels, over rows whose true label is >= 0."""
    t, p = _valid_labels(y_true, y_pred)
    return float(np.mean(t == p)) if len(t) else float("nan")


def f1_macro(y_true, y_pred) -> float:
    """Mean over the classes seen in truth or prediction of 2PR/(P+R); 0 for a class never hit."""
    t, p = _valid_labels(y_true, y_pred)
    if len(t) == 0:
        return float("nan")
    scores = []
    for c in np.union1d(t, p):
        tp = np.sum((p == c) & (t == c))
        denom = np.sum(p == c) + np.sum(t == c)  # = 2TP + FP + FN
        scores.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def classification_metrics(y_true, y_pred) -> dict[str, float]:
    t, _ = _valid_labels(y_true, y_pred)
    return {"accuracy": accuracy(y_true, y_pred), "f1_macro": f1_macro(y_true, y_pred),
            "n": int(len(t))}
