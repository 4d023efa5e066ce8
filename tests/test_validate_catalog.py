"""``galclip validate`` on embedding catalogs and their indexes, and what opening a catalog
catches: a truncated shard at open, 64 flipped bytes inside a shard only in validate."""
from __future__ import annotations

import json
import shutil

import pytest

from search_fixtures import build_all


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("validate"))


@pytest.fixture
def catalog(built, tmp_path):
    out = tmp_path / "catalog"
    shutil.copytree(built.catalog, out)
    return out


def first_shard(catalog):
    return catalog / json.loads((catalog / "manifest.json").read_text())["shards"][0]["file"]


def test_a_catalog_and_its_indexes_validate(catalog, capsys):
    from galclip.cli import main

    assert main(["validate", str(catalog)]) == 0
    out = capsys.readouterr().out
    assert "valid galclip-catalog" in out and "image: flat" in out and "spectrum: flat" in out
    assert "model file checked" in out


def test_flipped_bytes_inside_a_shard_pass_open_but_not_validate(catalog, capsys):
    from galclip.cli import main
    from galclip.search.catalog import read_catalog_manifest

    shard = first_shard(catalog)
    data = bytearray(shard.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    shard.write_bytes(bytes(data))
    read_catalog_manifest(catalog)                      # same size, footer intact: open passes
    assert main(["validate", str(catalog)]) == 2
    err = capsys.readouterr().err
    assert str(shard) in err and "sha256" in err


def test_a_truncated_shard_is_caught_at_open(catalog):
    from galclip.search.catalog import CatalogError, read_catalog_manifest

    shard = first_shard(catalog)
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CatalogError, match="bytes"):
        read_catalog_manifest(catalog)


def test_a_changed_index_file_or_model_is_named(catalog, built, capsys):
    from galclip.cli import main

    rows = catalog / "index-image.rows.npy"
    data = bytearray(rows.read_bytes())
    data[-1] ^= 1
    rows.write_bytes(bytes(data))
    assert main(["validate", str(catalog)]) == 2
    assert "index-image.rows.npy" in capsys.readouterr().err
    shutil.copy(built.catalog / "index-image.rows.npy", rows)
    manifest = json.loads((catalog / "manifest.json").read_text())
    other = catalog / "model.pt"
    other.write_bytes(b"another model")
    manifest["model"]["path"] = str(other)
    (catalog / "manifest.json").write_text(json.dumps(manifest))
    assert main(["validate", str(catalog)]) == 2
    assert "model file changed" in capsys.readouterr().err
