"""Zero-shot property prediction: k-nearest-neighbour regression on frozen embeddings.

As AstroCLIP (Parker et al. 2024, Sec. 5.1): embeddings are standardized with the mean and
standard deviation of the *training* set only, and each query's value is the inverse-distance
weighted mean of its k = 64 nearest training neighbours. Nothing is learned, so the score
measures what the embedding space already holds.

Cross-modal prediction fits on one modality's training embeddings and queries with the other's
(train on spectra, predict from images), which works only if the two spaces are aligned.

:class:`KNNRegressor` sees training labels only: ``fit(x, y)`` then ``predict(x_query)``.
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
