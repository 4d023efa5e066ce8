"""Embedding catalogs: embed -> index -> search round trip, resume after a kill, staleness."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from galclip.search.catalog import CatalogError, build_catalog, read_catalog_table
from search_fixtures import build_all
from search_helpers import fake_iter_embeddings, make_fake_model, write_latent_dataset


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("search"))


def test_catalog_keeps_every_row_in_order_with_nulls_for_missing_modality(built):
    from galclip.data import open_dataset

    ds = open_dataset(built.data).read_columns(["object_id", "redshift", "log_mstar", "has_spectrum"])
    t = read_catalog_table(built.catalog)
    assert t.num_rows == len(ds["object_id"]) == 90
    np.testing.assert_array_equal(t.column("object_id").to_numpy(), ds["object_id"])
    np.testing.assert_array_equal(t.column("log_mstar").to_numpy(), ds["log_mstar"])
    spec = t.column("spectrum_embedding")
    np.testing.assert_array_equal(spec.is_valid().to_numpy(zero_copy_only=False), ds["has_spectrum"])
    assert t.column("image_embedding").null_count == 0
    img = np.stack(t.column("image_embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    manifest = json.loads((built.catalog / "manifest.json").read_text())
    from galclip.search.catalog import file_sha256

    assert manifest["model"]["sha256"] == file_sha256(built.model_path)
    assert [s["n_rows"] for s in manifest["shards"]] == [32, 32, 26]


def test_own_image_finds_own_spectrum_for_most_galaxies(built):
    """Cross-modal round trip; the stand-in model matches images and spectra by their shared
    latent, so ids, order and nulls must all be right end to end for this to hold."""
    from galclip.search.api import Catalog

    cat = Catalog(built.catalog, model=built.model)
    ids = cat.meta["object_id"][cat.meta["has_spectrum"]]
    hits = [i in [n["object_id"] for n in cat.search(id=int(i), to="spectrum", k=5).neighbours]
            for i in ids]
    assert np.mean(hits) >= 0.8, f"own spectrum in top 5 for only {np.mean(hits):.2f}"
    # the reverse direction, and an image given as an array (embedded on the fly)
    row = cat.row_of(int(ids[0]))
    from galclip.data import open_dataset

    image = open_dataset(built.data)[row]["image"]
    res = cat.search(image=image, k=3)
    assert res.neighbours[0]["object_id"] == int(ids[0])
    assert res.query["from"] == res.query["to"] == "image"


@pytest.mark.slow
def test_real_tiny_clip_round_trip(tmp_path, capsys):
    """A real GalaxyCLIP checkpoint: catalog embeddings equal the model's own, and a cutout
    file is embedded on the fly (model loaded from the catalog's manifest) and finds itself."""
    import torch

    from galclip.data import open_dataset
    from galclip.search.api import Catalog
    from search_fixtures import build_real, fits_bytes_image

    real = build_real(tmp_path)
    out = capsys.readouterr().out
    assert "embedded 17 objects" in out and "objects/s" in out and "catalog of 17 objects" in out
    ds = open_dataset(real.data)
    t = read_catalog_table(real.catalog)
    assert t.num_rows == 17
    rows = [0, 9, 16]
    with torch.inference_mode():
        want = real.model.encode_image(torch.stack([torch.from_numpy(ds[r]["image"]) for r in rows]))
    got = np.stack(t.column("image_embedding").to_numpy(zero_copy_only=False)[rows])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    cat = Catalog(real.catalog)  # no model given: loads the checkpoint named in the manifest
    (tmp_path / "q.fits").write_bytes(fits_bytes_image(ds[9]["image"], pad=30))
    res = cat.search(image=tmp_path / "q.fits", k=3)
    assert res.neighbours[0]["object_id"] == int(ds[9]["object_id"])
    assert res.neighbours[0]["score"] > 0.999 and res.query["file"] == "q.fits"


def test_filtered_search_keeps_k_results(built):
    from galclip.search.api import Catalog

    cat = Catalog(built.catalog, model=built.model)
    res = cat.search(id=int(cat.meta["object_id"][0]), k=10, where="redshift > 0.3 and log_mstar < 11")
    assert len(res.neighbours) == 10
    assert all(n["redshift"] > 0.3 and n["log_mstar"] < 11 for n in res.neighbours)
    assert all(n["object_id"] != int(cat.meta["object_id"][0]) for n in res.neighbours)
    scores = [n["score"] for n in res.neighbours]
    assert scores == sorted(scores, reverse=True)


def _run_embed_script(data: Path, out: Path, model_path: Path, delay: float) -> subprocess.Popen:
    code = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from search_helpers import make_fake_model, fake_iter_embeddings
from galclip.search.catalog import build_catalog
def slow(*a, **k):
    for b in fake_iter_embeddings(*a, **k):
        time.sleep({delay})
        yield b
build_catalog(make_fake_model(), {str(data)!r}, {str(out)!r}, model_path={str(model_path)!r},
              rows_per_shard=20, batch_size=5, embed_fn=slow, progress=False)
"""
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    import torch

    data = write_latent_dataset(tmp_path / "data")
    model = make_fake_model()
    model_path = tmp_path / "fake.pt"
    torch.save(model.state_dict(), model_path)
    out = tmp_path / "killed"
    proc = _run_embed_script(data, out, model_path, delay=0.25)
    deadline = time.time() + 60
    while not (out / "shards/emb-00001.parquet").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (out / "shards/emb-00000.parquet").exists() and not (out / "manifest.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shards/emb-*.parquet")}
    m = build_catalog(model, data, out, model_path=model_path, rows_per_shard=20, batch_size=5,
                      embed_fn=fake_iter_embeddings, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shards/emb-*.parquet")}
    assert all(after[k] == v for k, v in before.items()), "finished shards were redone"
    assert not list(out.glob("**/.*tmp*")), "temporary files left behind"
    ref = build_catalog(model, data, tmp_path / "ref", model_path=model_path, rows_per_shard=20,
                        batch_size=5, embed_fn=fake_iter_embeddings, progress=False)
    assert m["n_rows"] == ref["n_rows"] == 90 and len(m["shards"]) == 5
    for a, b in zip(m["shards"], ref["shards"], strict=True):
        assert pq.read_table(out / a["file"]).equals(pq.read_table(tmp_path / "ref" / b["file"]))
    # rerun of the finished catalog, same inputs: nothing embedded, nothing rewritten
    manifest = (out / "manifest.json").read_bytes()
    calls = []
    again = build_catalog(model, data, out, model_path=model_path, rows_per_shard=20, batch_size=5,
                          embed_fn=lambda *a, **k: calls.append(a) or fake_iter_embeddings(*a, **k),
                          progress=False)
    assert calls == [] and again == m and (out / "manifest.json").read_bytes() == manifest


def test_stale_catalog_and_changed_settings_are_refused(tmp_path):
    import torch

    from galclip.search.api import Catalog

    data = write_latent_dataset(tmp_path / "data", shards=(12,))
    model_path = tmp_path / "fake.pt"
    model = make_fake_model()
    torch.save(model.state_dict(), model_path)
    kw = dict(model_path=model_path, embed_fn=fake_iter_embeddings, progress=False)
    build_catalog(model, data, tmp_path / "cat", **kw)
    with pytest.raises(CatalogError, match="other inputs or options.*columns"):
        build_catalog(model, data, tmp_path / "cat", columns=["log_mstar"], **kw)
    with pytest.raises(CatalogError, match=r"data/manifest.json: column\(s\) \['nope'\] are not scalar"):
        build_catalog(model, data, tmp_path / "cat2", columns=["nope"], **kw)
    model_path.write_bytes(model_path.read_bytes() + b"changed")
    with pytest.raises(CatalogError, match="stale catalog"):
        _ = Catalog(tmp_path / "cat").model
    with pytest.raises(CatalogError, match="other inputs or options.*model_sha256"):
        build_catalog(model, data, tmp_path / "cat", **kw)
    m = build_catalog(model, data, tmp_path / "cat", overwrite=True, **kw)
    assert m["n_rows"] == 12


def test_embed_search_index_commands(built, capsys, monkeypatch):
    """The CLI wraps the library: index and search print what the user asked for."""
    from galclip.cli import main
    from galclip.search import api

    monkeypatch.setattr(api.Catalog, "model", property(lambda self: built.model))
    first = int(read_catalog_table(built.catalog, ["object_id"]).column(0)[3].as_py())
    assert main(["index", str(built.catalog), "--kind", "hnsw"]) == 0
    assert "hnsw index over 90 vectors" in capsys.readouterr().out
    assert main(["search", str(built.catalog), "--id", str(first), "--to", "spectrum", "--k", "4",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    familiarity = {k: out["query"][k] for k in ("ood_score", "unfamiliar", "ood_k", "ood_distance",
                                                "ood_check")}
    assert familiarity["ood_check"] == "distance"         # an id query: no spectrum to fit
    assert out["query"] == {"id": first, "from": "image", "to": "spectrum", "k": 4, "where": None,
                            "redshift": out["query"]["redshift"], **familiarity}
    assert 0 <= familiarity["ood_score"] <= 1
    assert out["redshift"]["query"] == out["query"]["redshift"] is not None
    assert len(out["neighbours"]) == 4
    assert main(["search", str(built.catalog), "--id", "5", "--k", "3"]) == 2
    assert "object_id 5 is not in catalog" in capsys.readouterr().err
    assert main(["search", str(built.catalog), "--id", str(first), "--where", "bogus > 1"]) == 2
    assert "unknown column 'bogus'" in capsys.readouterr().err
    assert main(["index", str(built.catalog)]) == 0  # back to the automatic (exact) choice
    assert "flat index" in capsys.readouterr().out
