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


def test_dense_parquet_reads_back_the_same_table(tmp_path):
    """predict's Parquet writer skips dictionaries and list-column statistics; the table read
    back equals the default writer's, metadata included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from galclip.search.results import TableWriter

    rng = np.random.default_rng(1)
    pdf = rng.uniform(size=(500, 30)).astype(np.float32)
    table = pa.table({"object_id": np.arange(500, dtype=np.int64),
                      "z": rng.normal(size=500).astype(np.float32),
                      "flag": rng.uniform(size=500) < 0.1,
                      "pdf": pa.FixedSizeListArray.from_arrays(pa.array(pdf.ravel()), 30)})
    for dense in (False, True):
        w = TableWriter(tmp_path / f"{dense}.parquet", "k", {"a": 1}, dense=dense)
        w.write(table.slice(0, 200))
        w.write(table.slice(200))
        w.close()
    plain, dense = (pq.read_table(tmp_path / f"{d}.parquet") for d in (False, True))
    assert dense.equals(plain) and dense.schema.metadata == plain.schema.metadata
    meta = pq.ParquetFile(tmp_path / "True.parquet").metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert not any(c.has_dictionary_page for c in columns.values())
    assert columns["z"].is_stats_set and not columns["pdf.list.element"].is_stats_set
