"""``galclip evaluate`` end to end on a tiny dataset and an untrained nano-sized model."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import random_rows
from galclip.eval.report import referenced_files

pytestmark = pytest.mark.slow

FAST = ["knn.k=8", "probe.epochs=4", "label_efficiency.fractions=[0.1,1.0]", "data.batch_size=40",
        "baselines.image.epochs=1", "baselines.image.downsample=4", "baselines.image.max_train=24",
        "baselines.image.batch_size=12", "baselines.spectrum.epochs=1", "baselines.spectrum.channels=8",
        "baselines.spectrum.depth=1", "baselines.spectrum.num_heads=2",
        "baselines.spectrum.max_train=24", "retrieval.gallery_queries=2", "retrieval.gallery_top=3",
        "plots.embedding_map=pca", "plots.dpi=30"]
BATCH = 64  # the embedding batch of the evaluation config's defaults


def labelled_rows(n: int, seed: int, start_id: int) -> dict[str, np.ndarray]:
    rows = random_rows(n, seed=seed, start_id=start_id)
    rng = np.random.default_rng(seed + 100)
    f32 = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)  # noqa: E731
    rows.update(log_ssfr=f32(-12, -9), logz_mw=f32(-1, 0.3), tage_mw=f32(1, 12),
                flux_g=f32(1, 50), flux_r=f32(2, 80), flux_z=f32(3, 120),
                morph_featured=rng.integers(0, 3, n), morph_edge_on=rng.integers(-1, 2, n))
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from galclip.data import Provenance, shard_name, write_manifest, write_shard
    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP, save_model

    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    data.mkdir()
    shards = [write_shard(data / shard_name(i), labelled_rows(60, i, 60 * i)) for i in range(2)]
    write_manifest(data, shards, Provenance(command="test", seed=0))
    model = GalaxyCLIP(create_encoder("image-nano", depth=1), create_encoder("spectrum-nano", depth=1),
                       embed_dim=16)
    ckpt = save_model(model, root / "model.safetensors",
                      extra={"run_config": {"optim": {"freeze_backbones": True}}})
    return root, data, ckpt


def run_cli(root: Path, data: Path, ckpt: Path, out: str, *extra: str) -> Path:
    from galclip.cli import main

    assert main(["evaluate", "--model", str(ckpt), "--data", str(data), "--out", str(root / out),
                 *extra, *FAST]) == 0
    return root / out


@pytest.fixture(scope="module")
def report(setup):
    root, data, ckpt = setup
    return run_cli(root, data, ckpt, "report")


def test_report_files_and_table(report):
    for name in ("metrics.json", "report.md", "report.html", "config.yaml"):
        assert (report / name).is_file(), name
    m = json.loads((report / "metrics.json").read_text())
    rows = {(r["model"], r["source"], r["type"]) for r in m["results"]}
    assert {("galclip k-NN", "Image", "zero-shot"), ("galclip k-NN", "Spectrum→Image", "zero-shot"),
            ("galclip MLP", "Spectrum", "few-shot"), ("unaligned k-NN", "Image", "zero-shot"),
            ("MLP", "Photometry", "supervised"), ("conv ResNet", "Image", "supervised"),
            ("1-D ResNet", "Spectrum", "supervised"), ("k-NN", "Photometry", "supervised")} <= rows
    knn = next(r for r in m["results"] if (r["model"], r["source"]) == ("k-NN", "Photometry"))
    n_train = m["splits"]["train"]
    assert knn["budget"] == f"no training; k = 8 neighbours among {n_train} training galaxies"
    assert f"| {knn['budget']} |" in (report / "report.md").read_text()  # not a network's budget
    assert m["properties"] == ["redshift", "log_mstar", "logz_mw", "tage_mw", "log_ssfr"]
    chosen = [r for r in m["results"] if "k_selection" in r]  # beside the k = 8 rows, not instead
    assert {(r["model"], r["source"]) for r in chosen} == {
        ("galclip k-NN (k from val)", "Image"), ("galclip k-NN (k from val)", "Spectrum"),
        ("galclip k-NN (k from val)", "Spectrum→Image"), ("k-NN (k from val)", "Photometry")}
    grid = [4, 8, 16, 32, 64, n_train]  # the default grid, 128 capped at the training pool
    for r in chosen:
        assert r["k_selection"]["grid"] == grid and r["k_selection"]["split"] == "val"
        assert set(r["k"]) == set(m["properties"]) and set(r["k"].values()) <= set(grid)
    assert "## Zero-shot k chosen on the validation split" in (report / "report.md").read_text()
    assert set(m["morphology_columns"]) == {"morph_edge_on", "morph_featured"}
    assert m["splits"]["train"] + m["splits"]["test"] <= 120
    z = m["results"][0]["properties"]["redshift"]
    assert {"r2", "sigma_nmad", "bias", "eta_0.15", "eta_0.05"} <= set(z)
    assert {"pool_size", "image_to_spectrum/R@1"} <= set(m["retrieval"]["whole_set"])
    md = (report / "report.md").read_text()
    assert ("| Source | Model | Type | Redshift R² | Mean property R² | Morphology accuracy | "
            "log_mstar R² |") in md


def test_provenance_names_model_data_and_config(report, setup):
    _, data, ckpt = setup
    prov = json.loads((report / "metrics.json").read_text())["provenance"]
    assert prov["model"]["path"] == str(ckpt) and len(prov["model"]["sha256"]) == 64
    assert prov["data"]["path"] == str(data) and prov["data"]["n_rows"] == 120
    assert prov["config"]["knn"]["k"] == 8 and prov["command"].startswith("galclip evaluate")


def test_every_referenced_file_exists(report):
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5  # figures are embedded: self-contained
    assert all((report / t).is_file() for t in referenced_files(page))
    md = (report / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+\.png)\)", md)
    assert links and all((report / t).is_file() for t in links)


def test_two_runs_give_the_same_numbers(report, setup):
    root, data, ckpt = setup
    shutil.copytree(report / "cache", root / "again" / "cache")  # same embeddings, skip re-embedding
    again = run_cli(root, data, ckpt, "again", "baselines.image.enabled=false",
                    "baselines.spectrum.enabled=false")
    first = {r["id"]: r for r in json.loads((report / "metrics.json").read_text())["results"]}
    for r in json.loads((again / "metrics.json").read_text())["results"]:
        for prop, m in r["properties"].items():
            a, b = m["r2"], first[r["id"]]["properties"][prop]["r2"]
            assert (a is None and b is None) or abs(a - b) < 0.01, (r["id"], prop)


def test_scoring_the_training_split_is_refused(setup):
    from galclip.eval.evaluate import evaluate
    from galclip.eval.schema import evaluation_config

    root, data, ckpt = setup
    cfg = evaluation_config("cpu", ["data.test_split=train"])
    with pytest.raises(ValueError, match="shares galaxies with the training split"):
        evaluate(ckpt, data, root / "bad", cfg)


def test_referenced_files_catches_a_missing_figure(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    page = '<img src="a.png"><img src="figures/gone.png"><img src="data:image/png;base64,AA">'
    targets = referenced_files(page)
    assert targets == ["a.png", "figures/gone.png"]
    assert [t for t in targets if not (tmp_path / t).is_file()] == ["figures/gone.png"]


def test_unaligned_encoders_come_from_files_or_frozen_backbones(setup, tmp_path):
    import galclip
    from galclip.eval.evaluate import unaligned_encoders
    from galclip.models import save_encoder

    _, _, ckpt = setup
    model = galclip.load_model(ckpt)
    frozen = {"extra": {"run_config": {"optim": {"freeze_backbones": True}}}}
    tuned = {"extra": {"run_config": {"optim": {"freeze_backbones": False}}}}
    adapter, where = unaligned_encoders(model, frozen, {})
    assert adapter.image_encoder is model.image_encoder and "frozen backbone" in where
    adapter, where = unaligned_encoders(model, tuned, {})
    assert adapter is None and "--image-encoder" in where  # fine-tuned backbones are not unaligned
    paths = {m: save_encoder(getattr(model, f"{m}_encoder"), tmp_path / f"{m}.safetensors")
             for m in ("image", "spectrum")}
    adapter, where = unaligned_encoders(model, tuned, paths)
    assert adapter is not None and str(paths["image"]) in where
    import torch

    pooled = adapter.encode_image(torch.zeros(2, 3, 152, 152))
    assert tuple(pooled.shape) == (2, model.image_encoder.embed_dim)


def test_backbone_features_recorded_during_the_clip_pass_match_a_second_pass(setup):
    import galclip
    from galclip.data import open_dataset
    from galclip.eval.baselines import PooledFeatures
    from galclip.eval.evaluate import _embed

    _, data, ckpt = setup
    model, ds = galclip.load_model(ckpt), open_dataset(data)
    idx = np.arange(0, 120, 13)
    one = _embed(model, ds, idx, BATCH, "cpu", None, "x", pooled=True)
    two = _embed(PooledFeatures(model.image_encoder, model.spectrum_encoder), ds, idx, BATCH,
                 "cpu", None, "y")
    np.testing.assert_allclose(one["image_pooled"], two["image_embedding"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one["spectrum_pooled"], two["spectrum_embedding"], rtol=1e-5, atol=1e-6)
    assert one["image_embedding"].shape == (len(idx), 16)  # the CLIP embedding is unchanged


def test_galaxies_missing_a_modality_are_left_out(tmp_path):
    from galclip.data import Provenance, open_dataset, write_manifest, write_shard
    from galclip.eval.evaluate import load_split_rows
    from galclip.eval.schema import evaluation_config

    rows = labelled_rows(60, 7, 0)
    rows["has_spectrum"] = np.arange(60) % 3 != 0  # every third galaxy has no spectrum
    write_manifest(tmp_path, [write_shard(tmp_path / "part-00000.parquet", rows)],
                   Provenance(command="test"))
    out = load_split_rows(open_dataset(tmp_path), evaluation_config("cpu"))
    assert out["unpaired"] == 20
    for split in ("train", "test"):
        assert out[split].size and out["labels"]["has_spectrum"][out[split]].all()


# ----------------------------------------------------------------------------- one embedding path
QUICK = [*FAST, "baselines.image.enabled=false", "baselines.spectrum.enabled=false",
         "baselines.unaligned.enabled=false", "baselines.photometry.enabled=false"]


@pytest.fixture(scope="module")
def catalog(setup):
    import galclip
    from galclip.search.catalog import build_catalog

    root, data, ckpt = setup
    build_catalog(galclip.load_model(ckpt), data, root / "catalog", model_path=ckpt, device="cpu",
                  progress=False, rows_per_shard=50)
    return root / "catalog"


def test_evaluate_scores_the_vectors_the_catalog_serves(setup, catalog, monkeypatch):
    import galclip.models.inference as inference
    from galclip.eval.evaluate import prepare
    from galclip.eval.schema import evaluation_config
    from galclip.search.catalog import read_catalog_table

    root, data, ckpt = setup
    # the stored vectors, changed so that only a reader of the catalog can return them
    table = read_catalog_table(catalog)
    stored = {m: np.stack(table.column(f"{m}_embedding").to_numpy(zero_copy_only=False))
              for m in ("image", "spectrum")}

    def no_embedding(*a, **k):
        raise AssertionError("evaluate embedded the dataset again instead of reading the catalog")

    monkeypatch.setattr(inference, "embed_dataset", no_embedding)
    ctx, *_ = prepare(ckpt, data, root / "from-catalog", evaluation_config("cpu", QUICK), catalog)
    for m in ("image", "spectrum"):
        np.testing.assert_array_equal(ctx.emb_train[m], stored[m][ctx.train_idx])
        np.testing.assert_array_equal(ctx.emb_test[m], stored[m][ctx.test_idx])
    monkeypatch.undo()
    embedded, *_ = prepare(ckpt, data, root / "embedded", evaluation_config("cpu", QUICK))
    np.testing.assert_allclose(embedded.emb_test["image"], ctx.emb_test["image"], atol=1e-5)


def test_a_catalog_of_another_model_or_dataset_is_refused(setup, catalog, tmp_path):
    from galclip.data import Provenance, shard_name, write_manifest, write_shard
    from galclip.eval.evaluate import evaluate
    from galclip.eval.schema import evaluation_config
    from galclip.search.catalog import CatalogError

    root, data, ckpt = setup
    cfg = evaluation_config("cpu", QUICK)
    other = tmp_path / "other"
    other.mkdir()
    shards = [write_shard(other / shard_name(i), labelled_rows(60, 10 + i, 60 * i)) for i in range(2)]
    write_manifest(other, shards, Provenance(command="test", seed=1))
    with pytest.raises(CatalogError, match="field 'dataset.shards_sha256'.*another dataset"):
        evaluate(ckpt, other, tmp_path / "r1", cfg, catalog=catalog)
    import galclip
    from galclip.models.clip import save_model

    model = galclip.load_model(ckpt)
    next(model.parameters()).data += 1           # another model: another checkpoint sha256
    wrong = save_model(model, tmp_path / "model.safetensors")
    with pytest.raises(CatalogError, match="field 'model.sha256'.*another model"):
        evaluate(wrong, data, tmp_path / "r2", cfg, catalog=catalog)


def test_rerunning_a_finished_evaluation_does_nothing(setup, report, catalog, monkeypatch, capsys):
    """The finished report is the module's (a copy: the state file travels with it)."""
    import galclip.eval.evaluate as ev
    from galclip.eval.schema import evaluation_config

    root, data, ckpt = setup
    out = root / "rerun"
    shutil.copytree(report, out)
    first = json.loads((report / "metrics.json").read_text())
    stamp = (out / "report.html").stat().st_mtime_ns
    calls = []
    real = ev.prepare
    monkeypatch.setattr(ev, "prepare", lambda *a: calls.append(a) or real(*a))
    again = ev.evaluate(ckpt, data, out, evaluation_config("cpu", FAST))
    assert calls == [] and "up to date" in capsys.readouterr().out
    assert again == json.loads((out / "metrics.json").read_text())  # the finished report's numbers
    assert [r["id"] for r in again["results"]] == [r["id"] for r in first["results"]]
    assert (out / "report.html").stat().st_mtime_ns == stamp
    quick = evaluation_config("cpu", [*QUICK, "knn.k=4"])
    ev.evaluate(ckpt, data, out, quick, catalog=catalog)
    assert len(calls) == 1                       # another config: evaluated again
    capsys.readouterr()
    ev.evaluate(ckpt, data, out, quick, catalog=catalog)
    assert len(calls) == 1 and "up to date" in capsys.readouterr().out  # scored from the catalog


def test_embedding_cache_is_keyed_on_the_dataset_not_the_rows(setup, tmp_path, monkeypatch):
    """A different dataset with the same row count (a new simulation in the same --out) never
    reuses the old embeddings; the same dataset does."""
    import galclip
    import galclip.models.inference as inference
    from galclip.data import Provenance, open_dataset, shard_name, write_manifest, write_shard
    from galclip.eval.evaluate import _embed

    _, data, ckpt = setup
    other = tmp_path / "other"
    other.mkdir()
    shards = [write_shard(other / shard_name(i), labelled_rows(60, 20 + i, 60 * i)) for i in range(2)]
    write_manifest(other, shards, Provenance(command="test", seed=2))
    model, cache, idx = galclip.load_model(ckpt), tmp_path / "cache", np.arange(0, 120, 7)
    first = _embed(model, open_dataset(data), idx, BATCH, "cpu", cache, "clip-test")
    second = _embed(model, open_dataset(other), idx, BATCH, "cpu", cache, "clip-test")
    assert np.array_equal(first["object_id"], second["object_id"])  # same ids and rows ...
    assert not np.allclose(first["image_embedding"], second["image_embedding"])  # ... new vectors
    assert len(list(cache.glob("clip-test-*.npz"))) == 2
    monkeypatch.setattr(inference, "embed_dataset", lambda *a, **k: pytest.fail("not cached"))
    cached = _embed(model, open_dataset(data), idx, BATCH, "cpu", cache, "clip-test")
    np.testing.assert_array_equal(cached["image_embedding"], first["image_embedding"])
