"""Cross-modal retrieval metrics as plain functions of paired embeddings, shared by training
(alignment's validation) and evaluation.

Row ``i`` of the query embeddings matches row ``i`` of the gallery. For each query the rank of
its match among the gallery sorted by cosine similarity (1 = best) gives recall@k (fraction of
queries whose match is in the top k) and the median rank, as in CLIP-style evaluations
(AstroCLIP, Parker et al. 2024, sec. 5.1). Metrics are computed in pools of ``pool_size``
galaxies (chance median rank = pool_size / 2), so figures from sets of different sizes compare.
"""
from __future__ import annotations

from typing import Any

import numpy as np

RECALL_KS: tuple[int, ...] = (1, 5, 10)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def match_ranks(query: Any, gallery: Any) -> np.ndarray:
    """1-based rank of ``gallery[i]`` among all gallery rows for ``query[i]`` (cosine), shape (N,).

    Ties count against the query (a match tied with another row gets the worse rank).
    """
    q, g = _unit(_as_numpy(query)), _unit(_as_numpy(gallery))
    if q.shape != g.shape or q.ndim != 2:
        raise ValueError(f"match_ranks needs two (N, E) arrays of the same shape, got {q.shape}, {g.shape}")
    sim = q @ g.T  # (N, N)
    true = np.diagonal(sim)[:, None]
    return (sim >= true).sum(axis=1).astype(np.int64)


def pooled_ranks(query: Any, gallery: Any, pool_size: int = 1000, seed: int = 0) -> np.ndarray:
    """Ranks within disjoint random pools of ``pool_size`` (one pool of all rows if fewer).

    Rows left over after the last full pool are not ranked, so every rank has the same chance level.
    """
    q, g = _as_numpy(query), _as_numpy(gallery)
    n = len(q)
    if n < 2:
        raise ValueError(f"retrieval needs at least 2 pairs, got {n}")
    size = min(pool_size, n)
    order = np.random.default_rng(seed).permutation(n)
    pools = [order[i: i + size] for i in range(0, n - size + 1, size)]
    return np.concatenate([match_ranks(q[p], g[p]) for p in pools])


def rank_metrics(ranks: np.ndarray, ks: tuple[int, ...] = RECALL_KS) -> dict[str, float]:
    """``R@k`` for each k, ``median_rank`` and ``mean_rank`` of 1-based ranks."""
    ranks = np.asarray(ranks)
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    return out


def retrieval_metrics(image_emb: Any, spectrum_emb: Any, pool_size: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """Both directions: keys ``image_to_spectrum/R@1`` ... ``spectrum_to_image/median_rank``,
    plus ``pool_size`` (the pool actually used) and ``n_ranked``."""
    out: dict[str, float] = {}
    for name, q, g in (("image_to_spectrum", image_emb, spectrum_emb),
                       ("spectrum_to_image", spectrum_emb, image_emb)):
        ranks = pooled_ranks(q, g, pool_size, seed)
        out.update({f"{name}/{k}": v for k, v in rank_metrics(ranks).items()})
    out["pool_size"] = float(min(pool_size, len(_as_numpy(image_emb))))
    out["n_ranked"] = float(len(ranks))
    return out
