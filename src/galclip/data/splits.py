"""Deterministic train/val/test splits derived from object ids.

A galaxy's split depends only on its ``object_id`` (a 64-bit hash, splitmix64), never on row
order or dataset size, so every stage (pretraining, alignment, evaluation, baselines) agrees
on which galaxies are held out. A dataset with a ``split`` column uses that column instead.

That column may also label rows :data:`REFERENCE`: galaxies that are only looked up, never
trained on or evaluated (``galclip simulate --reference N`` adds N such rows after the survey, so
the search catalog, the OOD score and ``galclip predict`` have a denser reference than the
training survey; docs/simulate.md). They belong to none of :data:`SPLITS`.
"""
from __future__ import annotations

import numpy as np

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
SPLITS = ("train", "val", "test")
REFERENCE = "reference"          # a stored label: look-up only, never trained on or evaluated
LABELS = (*SPLITS, REFERENCE)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_uniform(object_ids: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per object id, stable across runs and machines."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.asarray(object_ids, dtype=np.int64).view(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_splits(object_ids: np.ndarray, fractions: dict[str, float] | None = None) -> np.ndarray:
    """Split name ('train', 'val', 'test') for each object id."""
    fr = fractions or DEFAULT_FRACTIONS
    if any(k not in SPLITS for k in fr) or abs(sum(fr.values()) - 1) > 1e-9:
        raise ValueError(f"split fractions must use keys {SPLITS} and sum to 1, got {fr}")
    u = hash_uniform(object_ids)
    out = np.empty(len(u), dtype=object)
    lo = 0.0
    for name in SPLITS:
        hi = lo + fr.get(name, 0.0)
        out[(u >= lo) & (u < hi)] = name
        lo = hi
    out[u >= lo] = SPLITS[-1]
    return out.astype(str)


def split_indices(object_ids: np.ndarray, split: str, fractions: dict[str, float] | None = None,
                  stored: np.ndarray | None = None) -> np.ndarray:
    """Row indices of ``split`` (one of :data:`LABELS`); uses a stored ``split`` column when the
    dataset has one (without one, no row is :data:`REFERENCE`)."""
    return rows_in(object_ids, (split,), fractions, stored)


def rows_in(object_ids: np.ndarray, splits: tuple[str, ...], fractions: dict[str, float] | None = None,
            stored: np.ndarray | None = None) -> np.ndarray:
    """Row indices (increasing) of any of ``splits`` (e.g. the rows no model trained on:
    ``("test", "reference")``), the labels read or assigned once."""
    unknown = [s for s in splits if s not in LABELS]
    if unknown:
        raise ValueError(f"unknown split {unknown[0]!r}; choose from {LABELS}")
    labels = np.asarray(stored).astype(str) if stored is not None else assign_splits(
        object_ids, fractions)
    return np.flatnonzero(np.isin(labels, splits))
