"""The Python examples of docs/search.md run as written against a small catalog."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from search_helpers import clustered_vectors

DOC = Path(__file__).resolve().parents[1] / "docs" / "search.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    from galclip.search.catalog import write_catalog

    out = tmp_path_factory.mktemp("doc") / "catalog"
    n, rng = 60, np.random.default_rng(0)
    meta = {"object_id": np.arange(n, dtype=np.int64) + 100, "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-5, 5, n), "redshift": rng.uniform(0, 0.6, n).astype(np.float32),
            "log_mstar": rng.uniform(8, 12, n).astype(np.float32)}
    present = {"image": np.ones(n, bool), "spectrum": rng.uniform(size=n) > 0.2}
    vectors = {"image": clustered_vectors(n, 16), "spectrum": clustered_vectors(n, 16, seed=3)}
    write_catalog(out, meta, vectors, model_sha256="0" * 64, present=present, rows_per_shard=25)
    return out


def test_doc_has_an_example_per_tool():
    text = "\n".join(BLOCKS)
    for tool in ("pandas", "polars", "duckdb", "astropy", "Catalog("):
        assert tool in text


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_doc_example_runs(catalog, i, capsys, tmp_path, monkeypatch):
    if "import lsdb" in BLOCKS[i]:
        pytest.importorskip("lsdb")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    code = BLOCKS[i].replace('catalog = "catalogs/sim"', f"catalog = {str(catalog)!r}")
    assert str(catalog) in code, "examples must name the catalog as catalog = \"catalogs/sim\""
    exec(compile(code, f"docs/search.md example {i}", "exec"), {})
    assert capsys.readouterr().out.strip()
