"""The fast paths of galclip predict give exactly what the plain paths give: the list-ordered
IVF search, the summaries of the neighbours, the Parquet output."""
from __future__ import annotations

import numpy as np
import pytest


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["ivf", "flat"])
def test_list_ordered_search_equals_plain_search(kind):
    """Scores and positions bit for bit, ties (duplicated vectors) and short lists included."""
    from galclip.search.index import batch_search, create_index, set_search_param

    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(3000, 16)))
    base[1000:1100] = base[:100]                         # exact duplicates: tied scores
    index = create_index(base, kind, nlist=32)
    if kind == "ivf":
        set_search_param(index, kind, 5)
    queries = np.concatenate([_unit(rng.normal(size=(700, 16))), base[:50]])
    for k in (1, 10, 200, 600):                          # 600: more than 5 lists hold
        want = index.search(queries, k)
        got = batch_search(index, queries, k)
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)), k
