"""HATS export: the embedding catalog opens with lsdb.open_catalog with every row, column and
embedding intact, and cross-matches against a second LSDB catalog built from the same
positions."""
from __future__ import annotations

import numpy as np
import pytest

from search_helpers import clustered_vectors

lsdb = pytest.importorskip("lsdb")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from galclip.search.catalog import write_catalog

    out = tmp_path_factory.mktemp("hats") / "catalog"
    n, rng = 120, np.random.default_rng(0)
    meta = {"object_id": np.arange(n, dtype=np.int64) * 3 + 39627866878500000,
            "ra": rng.uniform(150, 152, n), "dec": rng.uniform(1, 3, n),
            "redshift": rng.uniform(0, 0.6, n).astype(np.float32)}
    present = {"image": np.ones(n, bool), "spectrum": rng.uniform(size=n) > 0.2}
    vectors = {"image": clustered_vectors(n, 16), "spectrum": clustered_vectors(n, 16, seed=3)}
    write_catalog(out, meta, vectors, model_sha256="0" * 64, present=present, rows_per_shard=50)
    return out, meta, vectors, present


@pytest.mark.slow
def test_export_opens_with_lsdb_with_rows_and_embeddings_intact(catalog, tmp_path, capsys):
    from galclip.cli import main

    src, meta, vectors, present = catalog
    out = tmp_path / "hats"
    assert main(["export", str(src), "--hats", str(out), "--name", "galclip_test",
                 "--partition-rows", "40"]) == 0
    assert "HATS catalog written" in capsys.readouterr().out
    cat = lsdb.open_catalog(out)
    assert cat.name == "galclip_test" and cat.get_healpix_pixels()
    df = cat.compute().sort_values("object_id")
    assert list(df["object_id"]) == list(meta["object_id"])
    np.testing.assert_array_equal(df["ra"].to_numpy(float), meta["ra"])
    emb = np.stack(df["image_embedding"].to_numpy())
    np.testing.assert_allclose(emb, vectors["image"], rtol=1e-6)
    spec = df["spectrum_embedding"]
    assert (~spec.isna()).to_numpy().tolist() == present["spectrum"].tolist()
    assert main(["export", str(src), "--hats", str(out)]) == 2  # exists: refused
    assert "pass --overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_crossmatch_with_a_second_catalog_from_the_same_positions(catalog, tmp_path):
    import pandas as pd

    from galclip.search.hats_export import export_hats

    src, meta, _, _ = catalog
    emb = lsdb.open_catalog(export_hats(src, tmp_path / "emb", partition_rows=30))
    rng = np.random.default_rng(1)
    jitter = 0.2 / 3600  # 0.2 arcsec
    other = pd.DataFrame({"survey_id": meta["object_id"] + 7,
                          "ra": meta["ra"] + rng.uniform(-jitter, jitter, len(meta["ra"])),
                          "dec": meta["dec"] + rng.uniform(-jitter, jitter, len(meta["ra"]))})
    other_cat = lsdb.from_dataframe(other, ra_column="ra", dec_column="dec", catalog_name="other",
                                    partition_rows=25)
    pairs = emb.crossmatch(other_cat, radius_arcsec=1.0, n_neighbors=1, suffixes=("", "_other"),
                           suffix_method="all_columns").compute()
    assert len(pairs) == len(meta["object_id"])
    np.testing.assert_array_equal(pairs["survey_id_other"].to_numpy() - 7, pairs["object_id"].to_numpy())
    assert (pairs["_dist_arcsec"] < 0.3).all()
