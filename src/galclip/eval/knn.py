"""Zero-shot property prediction: k-nearest-neighbour regression on frozen embeddings.

As AstroCLIP (Parker et al. 2024, Sec. 5.1): embeddings are standardized with the mean and
standard deviation of the *training* set only, and each query's value is the inverse-distance
weighted mean of its k = 64 nearest training neighbours. Nothing is learned, so the score
measures what the embedding space already holds.

Cross-modal prediction fits on one modality's training embeddings and queries with the other's
(train on spectra, predict from images), which works only if the two spaces are aligned.

:class:`KNNRegressor` sees training labels only: ``fit(x, y)`` then ``predict(x_query)``.

k = 64 suits AstroCLIP's pool of ~160k galaxies (0.04 % of it per query); on a pool of a few
thousand the same k averages over a neighbourhood tens of times wider. :func:`choose_k` picks k
per property from a grid on a validation split (neighbours from the training pool), never on the
scored split; :func:`predict_per_property_k` then predicts with those k.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: (name, modality the neighbours come from, modality of the query)
ZERO_SHOT_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("image", "image", "image"),
    ("spectrum", "spectrum", "spectrum"),
    ("spectrum→image", "spectrum", "image"),
)


@dataclass
class KNNRegressor:
    """Distance-weighted k-NN regression on standardized features (multi-output, NaN-aware).

    Training rows whose label is NaN are skipped for that output only. A query that coincides
    with training points (distance 0) takes the mean of those points, as scikit-learn does.
    """

    k: int = 64
    standardize: bool = True
    _mean: np.ndarray = field(init=False, repr=False, default=None)
    _std: np.ndarray = field(init=False, repr=False, default=None)

    def fit(self, x: np.ndarray, y: np.ndarray) -> KNNRegressor:
        from sklearn.neighbors import NearestNeighbors

        x = np.asarray(x, dtype=np.float64)  # (N, D)
        y = np.asarray(y, dtype=np.float64)  # (N,) or (N, P)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"k-NN fit: features {x.shape} and labels {y.shape} do not match")
        self._mean = x.mean(0) if self.standardize else np.zeros(x.shape[1])
        std = x.std(0) if self.standardize else np.ones(x.shape[1])
        self._std = np.where(std > 0, std, 1.0)
        self._y = y
        self._nn = NearestNeighbors(n_neighbors=min(self.k, len(x))).fit(self._scale(x))
        return self

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self._mean) / self._std

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self._mean is None:
            raise RuntimeError("KNNRegressor.predict called before fit")
        dist, idx = self._nn.kneighbors(self._scale(x))  # (M, k) each
        y = self._y if self._y.ndim == 2 else self._y[:, None]
        yn = y[idx]  # (M, k, P)
        finite = np.isfinite(yn)
        exact = (dist == 0)[:, :, None] & finite  # (M, k, P)
        inv = 1.0 / np.where(dist == 0, 1.0, dist)[:, :, None]
        w = np.where(exact.any(1, keepdims=True), exact, inv * finite)  # (M, k, P)
        with np.errstate(invalid="ignore", divide="ignore"):
            pred = (w * np.where(finite, yn, 0.0)).sum(1) / w.sum(1)  # (M, P)
        return pred if self._y.ndim == 2 else pred[:, 0]


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray,
                k: int = 64) -> np.ndarray:
    """Fit on (train_x, train_y) and predict at query_x."""
    return KNNRegressor(k=k).fit(train_x, train_y).predict(query_x)


@dataclass(frozen=True)
class KChoice:
    """The k of each property chosen on a validation split (:func:`choose_k`).

    ``grid``: the k values tried (capped at the training pool); ``val_r2``: (len(grid), P) R² on
    the validation galaxies; ``k``: the chosen k per property (P,).
    """

    grid: tuple[int, ...]
    val_r2: np.ndarray  # (len(grid), P)
    k: tuple[int, ...]  # (P,)


def k_grid(grid, n_pool: int) -> tuple[int, ...]:
    """The grid's k values capped at the pool size ``n_pool``, duplicates dropped, in order."""
    if n_pool < 1 or not grid or any(int(k) < 1 for k in grid):
        raise ValueError(f"k-NN: need positive k values and a non-empty pool, got {list(grid)} "
                         f"and a pool of {n_pool}")
    return tuple(dict.fromkeys(min(int(k), n_pool) for k in grid))


def choose_k(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             grid) -> KChoice:
    """Per property, the k of ``grid`` whose k-NN (neighbours from the training pool) scores the
    highest R² on the validation galaxies (the first in the grid's order on a tie). A property
    without a finite validation R² takes the largest k of the grid.

    It sees training and validation data only, so the split that is scored afterwards cannot
    influence the choice: AstroCLIP fixes k = 64 for a ~160k-galaxy pool; on a pool 40× smaller
    that neighbourhood is 40× wider in the embedding, and the right k is a property of the pool
    and the embedding, which the validation split measures without touching the test split.
    """
    from galclip.eval.metrics import r2_score

    train_y = np.asarray(train_y, dtype=np.float64).reshape(len(train_y), -1)  # (N, P)
    val_y = np.asarray(val_y, dtype=np.float64).reshape(len(val_y), -1)        # (M, P)
    ks = k_grid(grid, len(train_x))
    r2 = np.full((len(ks), train_y.shape[1]), np.nan)  # (K, P)
    for i, k in enumerate(ks):
        pred = KNNRegressor(k=k).fit(train_x, train_y).predict(val_x)  # (M, P)
        r2[i] = [r2_score(val_y[:, j], pred[:, j]) for j in range(train_y.shape[1])]
    return KChoice(ks, r2, tuple(ks[int(np.nanargmax(col))] if np.isfinite(col).any() else max(ks)
                                 for col in r2.T))


def predict_per_property_k(train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray,
                           k: tuple[int, ...]) -> np.ndarray:
    """(M, P) k-NN predictions, property j with its own ``k[j]``; each column is exactly what
    :class:`KNNRegressor` with that k predicts for all properties together."""
    train_y = np.asarray(train_y, dtype=np.float64).reshape(len(train_y), -1)  # (N, P)
    out = np.empty((len(query_x), train_y.shape[1]))
    for kk in sorted(set(k)):
        cols = [j for j, kj in enumerate(k) if kj == kk]
        out[:, cols] = KNNRegressor(k=kk).fit(train_x, train_y).predict(query_x)[:, cols]
    return out
