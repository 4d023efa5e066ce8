"""Few-shot probes: a small MLP trained on frozen embeddings (or any fixed features).

As AstroCLIP (Parker et al. 2024, Sec. 5.1) the probe is an MLP with two hidden layers of 64
units (GELU, dropout 0.1). Inputs and regression targets are standardized with training-set
statistics; regression minimises the mean squared error over finite labels (multi-output, a
NaN label is skipped), classification the cross entropy over rows with a label >= 0. A random
``val_fraction`` of the training rows is held out for early stopping and the best weights are
kept. Everything is seeded: the same inputs give the same predictions.

``label_efficiency`` retrains the regression probe on 1 %, 10 % and 100 % of the training labels
(a seeded subsample) to draw the label-efficiency curve.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from galclip.eval import metrics as M
from galclip.eval.loop import LoopConfig, fit_to_plateau

#: a drop of the validation loss smaller than this is no improvement
MIN_DELTA = 1e-6


@dataclass
class ProbeSettings:
    """How a probe trains: the evaluation config's ``probe`` section (the seed is the config's own)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])  # two hidden layers of 64, as AstroCLIP
    dropout: float = 0.1
    epochs: int = 200                   # upper bound; early stopping usually ends sooner
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1           # of training rows, held out for early stopping
    patience: int = 20                  # epochs without validation improvement before stopping (0: never)


@dataclass
class ProbeConfig(ProbeSettings):
    """A probe's settings and the seed of its initial weights, validation rows and batches."""

    seed: int = 0

    def loop(self) -> LoopConfig:
        """The training loop's settings: early stopping, no warm-up, no learning-rate drops."""
        return LoopConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                          weight_decay=self.weight_decay, seed=self.seed, patience=self.patience,
                          min_delta=MIN_DELTA)


def build_mlp(n_in: int, n_out: int, hidden: Sequence[int], dropout: float):
    import torch.nn as nn

    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _split_val(n: int, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    n_val = int(round(frac * n)) if n >= 20 else 0
    return perm[n_val:], perm[:n_val]


class MLPProbe:
    """``MLPProbe("regression" | "classification", cfg).fit(x, y).predict(x_query)``."""

    def __init__(self, task: str = "regression", cfg: ProbeConfig | None = None):
        if task not in ("regression", "classification"):
            raise ValueError(f"probe task must be 'regression' or 'classification', got {task!r}")
        self.task, self.cfg = task, cfg or ProbeConfig()
        self.net = None

    # ------------------------------------------------------------------ data preparation
    def _prepare_targets(self, y: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            y = np.asarray(y).astype(np.int64)
            if (y >= 0).sum() == 0:
                raise ValueError("classification probe: no row has a label >= 0")
            self.n_out = int(y.max()) + 1
            return y
        y = np.asarray(y, dtype=np.float64)
        self._multi = y.ndim == 2
        y = y if self._multi else y[:, None]  # (N, P)
        self.y_mean, self.y_std = np.nanmean(y, 0), np.nanstd(y, 0)
        self.y_std = np.where(self.y_std > 0, self.y_std, 1.0)
        self.n_out = y.shape[1]
        return (y - self.y_mean) / self.y_std

    def _loss(self, out, y):
        import torch
        import torch.nn.functional as F

        if self.task == "classification":
            return F.cross_entropy(out, y, ignore_index=-1)
        ok = torch.isfinite(y)
        return F.mse_loss(out[ok], y[ok]) if ok.any() else out.sum() * 0.0

    # ------------------------------------------------------------------ training
    def fit(self, x: np.ndarray, y: np.ndarray) -> MLPProbe:
        import torch

        from galclip.augment import one_thread

        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"probe fit: features {x.shape} and labels {np.shape(y)} do not match")
        cfg = self.cfg
        self.x_mean, self.x_std = x.mean(0), x.std(0)
        self.x_std = np.where(self.x_std > 0, self.x_std, 1.0)
        yt = self._prepare_targets(y)
        torch.manual_seed(cfg.seed)
        self.net = build_mlp(x.shape[1], self.n_out, cfg.hidden, cfg.dropout)
        X = torch.as_tensor(self._scale(x), dtype=torch.float32)
        Y = torch.as_tensor(yt, dtype=torch.long if self.task == "classification" else torch.float32)
        tr, va = _split_val(len(X), cfg.val_fraction, np.random.default_rng(cfg.seed))
        with one_thread():  # tiny MLPs: faster on one thread (3.5x for a 64-64 probe on 2 shared cores)
            self._train(X, Y, tr, va)
        return self

    def _train(self, X, Y, tr: np.ndarray, va: np.ndarray) -> None:
        import torch

        val = (lambda: self._val_loss(X[va], Y[va])) if len(va) else None
        fit_to_plateau(self.net, lambda b: self._loss(self.net(X[b]), Y[b]), val,
                       torch.as_tensor(tr), self.cfg.loop())

    def _val_loss(self, x, y) -> float:
        import torch

        self.net.eval()
        with torch.inference_mode():
            return float(self._loss(self.net(x), y))

    # ------------------------------------------------------------------ inference
    def _scale(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.x_mean) / self.x_std

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.net is None:
            raise RuntimeError("MLPProbe.predict called before fit")
        self.net.eval()
        with torch.inference_mode():
            out = self.net(torch.as_tensor(self._scale(x), dtype=torch.float32)).numpy()
        if self.task == "classification":
            return out.argmax(1)
        out = out.astype(np.float64) * self.y_std + self.y_mean
        return out if self._multi else out[:, 0]


def subsample(n: int, fraction: float, seed: int, min_rows: int = 8) -> np.ndarray:
    """Seeded, sorted subset of ``range(n)`` with ``ceil(fraction * n)`` rows (at least min_rows)."""
    k = min(n, max(min_rows, math.ceil(fraction * n)))
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def label_efficiency(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     y_test: np.ndarray, names: list[str], fractions=(0.01, 0.1, 1.0),
                     cfg: ProbeConfig | None = None) -> dict[str, dict[str, float]]:
    """R² per property on the test set for a probe trained on each fraction of the labels.

    Returns ``{fraction: {property: r2, "n_train": rows}}`` (fraction keys as strings).
    """
    cfg = cfg or ProbeConfig()
    out = {}
    for f in fractions:
        rows = subsample(len(x_train), f, cfg.seed)
        pred = MLPProbe("regression", cfg).fit(x_train[rows], y_train[rows]).predict(x_test)
        scores = {p: M.r2_score(y_test[:, j], pred[:, j]) for j, p in enumerate(names)}
        out[f"{f:g}"] = {**scores, "n_train": int(len(rows))}
    return out
