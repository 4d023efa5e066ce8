"""How sure is each number of the report: bootstrap and binomial 68 % intervals.

Regression metrics (R², σ_NMAD, bias, outlier fraction) get a percentile bootstrap over the
test galaxies (Efron & Tibshirani 1993, ch. 13): the galaxies are resampled with replacement
``n_boot`` times and each metric recomputed; the interval is the 16th-84th percentile. Every
row is resampled with the same draws, so rows can be compared. A morphology accuracy of k
correct out of n gets the Wilson score interval (Wilson 1927) at one sigma.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from galclip.eval.metrics import NMAD_SCALE

LEVEL = 0.68


def _r2(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Row-wise R² of (B, N) truth and prediction."""
    ss_res = np.sum((t - p) ** 2, axis=1)
    ss_tot = np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)


def _redshift_stats(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    dz = (p - t) / (1 + t)  # (B, N)
    nmad = NMAD_SCALE * np.median(np.abs(dz - np.median(dz, axis=1, keepdims=True)), axis=1)
    return {"sigma_nmad": nmad, "bias": dz.mean(axis=1),
            "eta_0.15": (np.abs(dz) > 0.15).mean(axis=1), "eta_0.05": (np.abs(dz) > 0.05).mean(axis=1)}


def _interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    s = samples[np.isfinite(samples)]
    if len(s) < 10:
        return None
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def bootstrap_intervals(y_true: np.ndarray, preds: Mapping[str, np.ndarray], names: Sequence[str],
                        n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """{result id: {property: {metric: [lo, hi]}, "mean_property_r2": [lo, hi]}}.

    ``y_true`` (N, P) and each prediction (N, P) are over the same test galaxies; non-finite
    pairs are dropped per property (as the metrics do).
    """
    y_true = np.asarray(y_true, np.float64)
    draws = np.random.default_rng(seed).integers(0, len(y_true), size=(n_boot, len(y_true)))  # (B, N)
    out = {}
    for rid, pred in preds.items():
        pred = np.asarray(pred, np.float64)
        row, r2s = {}, []
        for j, name in enumerate(names):
            t, p = y_true[draws, j], pred[draws, j]  # (B, N)
            ok = np.isfinite(t) & np.isfinite(p)
            if not ok.all():  # drop non-finite pairs: resample the finite ones instead
                keep = np.flatnonzero(np.isfinite(y_true[:, j]) & np.isfinite(pred[:, j]))
                if len(keep) < 2:
                    continue
                idx = keep[draws % len(keep)]
                t, p = y_true[idx, j], pred[idx, j]
            r2 = _r2(t, p)
            stats = {"r2": r2, **(_redshift_stats(t, p) if name == "redshift" else {})}
            row[name] = {k: _interval(v) for k, v in stats.items()}
            if name != "redshift":
                r2s.append(r2)
        if r2s:
            row["mean_property_r2"] = _interval(np.nanmean(np.stack(r2s), axis=0))
        out[rid] = row
    return out


def wilson_interval(accuracy: float, n: int, z: float = 1.0) -> list[float] | None:
    """Wilson score interval of a proportion (z = 1: 68 %)."""
    if not n or accuracy is None or not np.isfinite(accuracy):
        return None
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return [float(centre - half), float(centre + half)]
