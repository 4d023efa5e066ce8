"""Every galclip stage on AstroCLIP's released checkpoint format (the tiny fixture made with the
official code): embed -> index -> search (CLI, Python API, server) -> export --hats -> evaluate,
and alignment starting from the published backbones."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import random_rows

pytestmark = pytest.mark.slow  # about 40 s on two busy cores (embedding 48 galaxies, evaluate)

CKPT = Path(__file__).resolve().parent / "fixtures" / "astroclip" / "astroclip_tiny.ckpt"
EVAL_FAST = ["knn.k=4", "probe.epochs=2", "label_efficiency.fractions=[1.0]", "data.batch_size=16",
             "baselines.image.enabled=false", "baselines.spectrum.enabled=false",
             "retrieval.gallery_queries=1", "retrieval.gallery_top=2", "plots.embedding_map=pca",
             "plots.dpi=20"]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    from galclip.cli import main
    from galclip.data import Provenance, shard_name, write_manifest, write_shard

    root = tmp_path_factory.mktemp("astroclip-stages")
    data = root / "data"
    data.mkdir()
    shards = []
    for i in range(2):
        rows = random_rows(24, seed=i, start_id=24 * i)
        rows["image"] = np.abs(rows["image"]) * 0.05  # nanomaggy-like cutouts
        shards.append(write_shard(data / shard_name(i), rows))
    write_manifest(data, shards, Provenance(command="test", seed=0))
    model = root / "astroclip.ckpt"
    shutil.copy(CKPT, model)
    assert main(["embed", "--model", str(model), "--data", str(data), "--out",
                 str(root / "catalog"), "--batch-size", "16"]) == 0
    assert main(["index", str(root / "catalog")]) == 0
    return root, data, model, root / "catalog"


def test_catalog_records_model_family_and_sha(stages):
    from galclip.search.catalog import file_sha256

    root, _data, model, catalog = stages
    manifest = json.loads((catalog / "manifest.json").read_text())
    assert manifest["model"]["family"] == "astroclip"
    assert manifest["model"]["sha256"] == file_sha256(model)
    assert manifest["embedding_dim"] == {"image": 32, "spectrum": 32}


def test_search_cli_and_api_on_published_model(stages, capsys):
    import galclip
    from galclip.cli import main
    from galclip.search import Catalog

    root, data, model, catalog = stages
    assert main(["search", str(catalog), "--id", "3", "--to", "spectrum", "--k", "3"]) == 0
    assert capsys.readouterr().out.strip()
    cat = Catalog(catalog)
    flux = np.abs(random_rows(1, seed=0)["spectrum_flux"])
    hits = cat.search(spectrum=(flux[0], np.ones_like(flux[0])), to="image", k=2)
    assert len(hits.neighbours) == 2
    assert type(cat.model).__name__ == "AstroCLIP" and cat.model is not galclip.load_model(model)


def test_changed_model_file_is_refused(stages, tmp_path):
    from galclip.search import Catalog

    root, _data, model, catalog = stages
    moved = tmp_path / "catalog"
    shutil.copytree(catalog, moved)
    other = tmp_path / "astroclip.ckpt"
    other.write_bytes(model.read_bytes() + b"\0")
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["model"]["path"] = str(other)
    (moved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="sha256"):
        Catalog(moved).search(spectrum=(np.ones(7781), np.ones(7781)), to="image", k=1)


def test_export_hats(stages, tmp_path):
    from galclip.cli import main

    _root, _data, _model, catalog = stages
    assert main(["export", str(catalog), "--hats", str(tmp_path / "hats")]) == 0
    assert any((tmp_path / "hats").rglob("*.parquet"))


def test_evaluate_on_published_model(stages):
    from galclip.cli import main

    root, data, model, catalog = stages
    out = root / "report"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(out),
                 *EVAL_FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {(r["model"], r["type"]) for r in metrics["results"]}
    assert ("galclip k-NN", "zero-shot") in rows and ("galclip MLP", "few-shot") in rows
    assert metrics["retrieval"] and metrics["provenance"]["model"]["config"]["family"] == "astroclip"


def test_align_starts_from_the_published_backbones(stages, tmp_path):
    import galclip
    from galclip.cli import main
    from galclip.models import load_encoder

    _root, data, _model, _catalog = stages
    fix = CKPT.parent
    out = tmp_path / "align"
    assert main(["align", "--config", "cpu", "--data", str(data), "--out", str(out),
                 "--image-encoder", str(fix / "astrodino_tiny.pth"),
                 "--spectrum-encoder", str(fix / "specformer_tiny.ckpt"), "model.embed_dim=8",
                 "data.batch_size=16", "optim.warmup_steps=1", "trainer.max_epochs=1",
                 "optim.finetune=[]", "objective.augment.image_shift=0"]) == 0
    model = galclip.load_model(out / "model.safetensors")
    assert model.image_encoder.config["arch"] == model.spectrum_encoder.config["arch"] == "astroclip"
    ref = load_encoder(fix / "specformer_tiny.ckpt").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.spectrum_encoder.state_dict().items())


def test_serve_finds_an_uploaded_object(stages):
    from fastapi.testclient import TestClient

    from galclip.data import open_dataset
    from galclip.search.api import Catalog
    from galclip.serve.server import create_app
    from search_fixtures import fits_bytes_image, fits_bytes_spectrum

    _root, data, _model, catalog = stages
    client = TestClient(create_app(catalog=Catalog(catalog), data_dir=data, max_upload_bytes=1_000_000))
    item = open_dataset(data)[5]
    cut = {"file": ("cut.fits", fits_bytes_image(item["image"], pad=8), "application/fits")}
    res = client.post("/api/search/upload", files=cut, data={"kind": "image", "k": "2"})
    assert res.status_code == 200, res.text
    assert res.json()["neighbours"][0]["object_id"] == int(item["object_id"])
    spec = {"file": ("s.fits", fits_bytes_spectrum(item["spectrum_flux"], item["spectrum_ivar"]))}
    res = client.post("/api/search/upload", files=spec, data={"kind": "spectrum", "to": "spectrum",
                                                              "k": "2"})
    assert res.status_code == 200, res.text
    assert res.json()["neighbours"][0]["object_id"] == int(item["object_id"])
