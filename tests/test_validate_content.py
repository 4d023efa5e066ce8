"""`galclip validate` checks content as well as bytes, and a malformed manifest is a clean error
naming the field; `embed` and `index` refuse non-finite vectors. Seeded fuzz over manifests."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import random_rows
from galclip.cli import main
from galclip.data import Provenance, shard_name, write_manifest, write_shard
from galclip.data.format import MANIFEST, DatasetError, validate_dataset


def _dataset(root, edit=None, shards=2, n=20):
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(shards):
        rows = random_rows(n, seed=i, start_id=n * i)
        if edit:
            edit(i, rows)
        entries.append(write_shard(root / shard_name(i), rows))
    write_manifest(root, entries, Provenance(command="test"))
    return root


def _at(shard, col, value, row=3, index=None):
    def edit(i, rows):
        if i == shard:
            if index is None:
                rows[col][row] = value
            else:
                rows[col][(row, *index)] = value
    return edit


CONTENT = {   # name -> (edit, pattern the error must show)
    "image-inf": (_at(1, "image", np.inf, index=(0, 5, 5)), r"part-00001.*'image', row 3: non-fin"),
    "flux-nan": (_at(0, "spectrum_flux", np.nan, index=(100,)), r"'spectrum_flux', row 3"),
    "ivar-negative": (_at(0, "spectrum_ivar", -1.0, index=(7,)), r"'spectrum_ivar', row 3: neg"),
    "ra-999": (_at(0, "ra", 999.0), r"'ra', row 3: value 999"),
    "dec-inf": (_at(1, "dec", np.inf), r"'dec', row 3: value inf"),
    "redshift-inf": (_at(0, "redshift", np.inf), r"'redshift', row 3"),
    "label-inf": (_at(1, "log_mstar", -np.inf), r"'log_mstar', row 3"),
    "duplicate-id": (_at(1, "object_id", 5), r"'object_id': 1 duplicate ids \(first 5"),
}


@pytest.mark.parametrize("name", sorted(CONTENT))
def test_validate_finds_bad_content_and_the_cli_exits_2(tmp_path, capsys, name):
    edit, pattern = CONTENT[name]
    ds = _dataset(tmp_path / "ds", edit)
    validate_dataset(ds)                                  # bytes and shapes are fine
    with pytest.raises(DatasetError, match=pattern):
        validate_dataset(ds, content=True)
    assert main(["validate", str(ds)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_null_rows_of_absent_modalities_are_not_content_errors(tmp_path):
    def edit(i, rows):
        mask = np.zeros(rows["image"].shape, bool)
        mask[2] = True
        rows["image"] = np.ma.MaskedArray(rows["image"], mask=mask)
        rows["redshift"][4] = np.nan                      # a missing label
    validate_dataset(_dataset(tmp_path / "ds", edit), content=True)


def _manifest_cases(tmp_path):
    outside = tmp_path / "outside.parquet"
    shutil.copy(tmp_path / "ds" / shard_name(0), outside)
    return {
        "no-sha256": lambda m: m["shards"][0].pop("sha256"),
        "no-file": lambda m: m["shards"][0].pop("file"),
        "no-n_rows": lambda m: m["shards"][0].pop("n_rows"),
        "shards-not-list": lambda m: m.update(shards={"a": 1}),
        "shards-empty": lambda m: m.update(shards=[]),
        "shard-not-object": lambda m: m["shards"].__setitem__(0, "part-00000.parquet"),
        "file-dot": lambda m: m["shards"][0].update(file="."),
        "file-traversal": lambda m: m["shards"][0].update(file="../../../../etc/passwd"),
        "file-absolute": lambda m: m["shards"][0].update(file="/etc/hostname"),
        "file-outside": lambda m: m["shards"][0].update(file=f"../{outside.name}"),
        "file-number": lambda m: m["shards"][0].update(file=3),
        "n_rows-string": lambda m: m["shards"][0].update(n_rows="20"),
        "n_rows-negative": lambda m: m.update(n_rows=-1),
        "sha-short": lambda m: m["shards"][0].update(sha256="abc"),
        "listed-twice": lambda m: m["shards"].append(copy.deepcopy(m["shards"][0])),
        "columns-list": lambda m: m.update(columns=[1]),
        "shape-bad": lambda m: m["columns"]["image"].update(shape="3x152"),
        "version-string": lambda m: m.update(version="one"),
        "top-level-list": None,
    }


def test_malformed_manifests_are_clean_errors_naming_the_field(tmp_path, monkeypatch):
    import galclip.data.format as fmt

    ds = _dataset(tmp_path / "ds")
    good = json.loads((ds / MANIFEST).read_text())
    hashed = []
    real_sha = fmt.sha256_file
    monkeypatch.setattr(fmt, "sha256_file", lambda p, *a: hashed.append(p) or real_sha(p, *a))
    for name, edit in _manifest_cases(tmp_path).items():
        m = copy.deepcopy(good)
        if edit is None:
            m = [m]
        else:
            edit(m)
        (ds / MANIFEST).write_text(json.dumps(m))
        hashed.clear()
        with pytest.raises(DatasetError, match=r"manifest.json: (field|not a JSON)") as e:
            validate_dataset(ds, content=True)
        assert "Traceback" not in str(e.value), name
        assert all(Path(p).resolve().parent == ds.resolve() for p in hashed), name
        assert not any("etc" in str(p) or "outside" in str(p) for p in hashed), (name, hashed)


@pytest.mark.slow
def test_seeded_manifest_fuzz_never_tracebacks(tmp_path):
    """Random deletions and type swaps at random places in the manifest: a DatasetError or a
    manifest still equivalent to the original (a change validate does not read)."""
    ds = _dataset(tmp_path / "ds")
    good = json.loads((ds / MANIFEST).read_text())
    rng = np.random.default_rng(3)
    junk = [None, -1, 0, 1.5, "", ".", "../x", [], {}, [1, 2], {"a": 1}, True, "x" * 300]
    outcomes = {"error": 0, "valid": 0}
    for _ in range(200):
        m = copy.deepcopy(good)
        node, key = _random_slot(m, rng)
        if rng.random() < 0.3 and isinstance(node, dict):
            node.pop(key)
        else:
            node[key] = junk[int(rng.integers(len(junk)))]
        (ds / MANIFEST).write_text(json.dumps(m))
        try:
            validate_dataset(ds, content=True)
            outcomes["valid"] += 1
        except DatasetError as e:
            assert str(e).startswith(str(ds)), e
            outcomes["error"] += 1
    assert outcomes["error"] > 150 and sum(outcomes.values()) == 200


def _random_slot(m, rng):
    """A random (container, key) inside the manifest's format/shards/columns/n_rows parts."""
    node, key = m, ["format", "version", "n_rows", "shards", "columns"][int(rng.integers(5))]
    while isinstance(node[key], (dict, list)) and node[key] and rng.random() < 0.7:
        node = node[key]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = keys[int(rng.integers(len(keys)))]
    return node, key


def test_embed_refuses_non_finite_inputs_and_index_refuses_nan_vectors(tmp_path):
    import torch

    from galclip.search.catalog import CatalogError, build_catalog
    from galclip.search.index import build_index
    from search_helpers import make_fake_model, write_latent_dataset

    data = write_latent_dataset(tmp_path / "data", shards=(10, 8))
    import pyarrow.parquet as pq
    t = pq.read_table(data / shard_name(1))
    img = t.column("image").to_numpy(zero_copy_only=False)
    rows = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
    rows["image"] = np.stack(img).reshape(len(img), 3, 152, 152).astype(np.float32)
    rows["spectrum_flux"] = np.stack(rows["spectrum_flux"]).astype(np.float32)
    rows["spectrum_ivar"] = np.stack(rows["spectrum_ivar"]).astype(np.float32)
    rows["image"][2, 0, 40:100, 40:100] = np.inf
    entries = [json.loads((data / MANIFEST).read_text())["shards"][0],
               write_shard(data / shard_name(1), rows)]
    write_manifest(data, entries, Provenance(command="test"))
    model = make_fake_model()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(CatalogError, match=r"row 12 \(object_id \d+\): the image embedding is "
                                           "not finite"):
        build_catalog(model, data, tmp_path / "cat", model_path=tmp_path / "m.pt",
                      rows_per_shard=32, progress=False)
    # a catalog written by some other tool with a NaN vector: index refuses it
    rows["image"][2] = 0.0
    entries[1] = write_shard(data / shard_name(1), rows)
    write_manifest(data, entries, Provenance(command="test"))
    build_catalog(model, data, tmp_path / "cat2", model_path=tmp_path / "m.pt", progress=False)
    _poison_catalog(tmp_path / "cat2")
    with pytest.raises(CatalogError, match="non-finite embedding"):
        build_index(tmp_path / "cat2", "image", verbose=False, save=False)


def _poison_catalog(cat):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from galclip.search.catalog import embedding_column, read_catalog_manifest, write_table_atomic

    m = read_catalog_manifest(cat)
    entry = m["shards"][0]
    t = pq.read_table(cat / entry["file"])
    col = embedding_column("image")
    vecs = np.stack(t.column(col).to_numpy(zero_copy_only=False)).astype(np.float32)
    vecs[1, 0] = np.nan
    arr = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1])
    t = t.set_column(t.schema.get_field_index(col), t.schema.field(col), arr)
    m["shards"][0] = {**entry, **write_table_atomic(cat / entry["file"], t, cat)}
    (cat / "manifest.json").write_text(json.dumps(m))


def test_seeded_shard_corruption_is_always_a_clean_error(tmp_path):
    from galclip.testing.corrupt import byte_variants

    ds = _dataset(tmp_path / "ds", n=6)
    shard = ds / shard_name(1)
    clean = shard.read_bytes()
    names = set()
    for name, blob in byte_variants(clean, np.random.default_rng(4), 40):
        names.add(name.split("-")[0])
        if blob == clean:
            continue
        shard.write_bytes(blob)
        with pytest.raises(DatasetError, match=r"part-00001.parquet: (sha256|holds|not a)"):
            validate_dataset(ds, content=True)
    assert names == {"truncate", "flip", "block"}
