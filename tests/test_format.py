"""The dataset format: round trip, shapes, streaming, and clear errors on bad folders."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import random_rows
from galclip import conventions as C
from galclip.data import DatasetError, open_dataset, validate_dataset


def test_round_trip_rows_and_shapes(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    assert len(ds) == 120
    assert ds.manifest["n_rows"] == 120 and len(ds.manifest["shards"]) == 3
    expected = random_rows(40, seed=1, start_id=40)
    row = ds[45]  # shard 1, row 5
    assert row["object_id"] == 45
    assert row["image"].shape == C.IMAGE_SHAPE and row["image"].dtype == np.float32
    np.testing.assert_array_equal(row["image"], expected["image"][5])
    np.testing.assert_array_equal(row["spectrum_flux"], expected["spectrum_flux"][5])
    assert ds[-1]["object_id"] == 119


def test_manifest_records_shapes_conventions_and_checksums(tiny_dataset):
    m = json.loads((tiny_dataset / "manifest.json").read_text())
    assert m["format"] == "galclip-dataset"
    assert m["columns"]["image"]["shape"] == [3, 152, 152]
    assert m["columns"]["spectrum_flux"]["shape"] == [7781]
    assert m["conventions"]["spectrum"]["wave_step_angstrom"] == 0.8
    assert all(len(s["sha256"]) == 64 for s in m["shards"])


def test_streaming_matches_random_access(tiny_dataset):
    ds = open_dataset(tiny_dataset, columns=["object_id", "spectrum_flux"])
    ids = np.concatenate([b["object_id"] for b in ds.iter_batches(batch_size=17)])
    np.testing.assert_array_equal(ids, np.arange(120))
    b = next(ds.iter_batches(batch_size=7))
    assert b["spectrum_flux"].shape == (7, C.N_WAVE)


def test_random_access_decodes_each_row_group_once_within_the_cache_budget(tiny_dataset, monkeypatch):
    import pyarrow.parquet as pq

    reads = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, **kw: reads.append(i) or real(self, i, **kw))
    order = np.random.default_rng(0).permutation(120)
    ds = open_dataset(tiny_dataset, columns=["object_id", "spectrum_flux"])
    for _ in range(2):  # two shuffled epochs: every row group decoded once in all
        assert [ds[int(i)]["object_id"] for i in order] == order.tolist()
    n_groups = sum(pq.ParquetFile(f).num_row_groups for f in sorted(tiny_dataset.glob("*.parquet")))
    assert len(reads) == n_groups
    # a budget of one and a half shards of spectra: the cache never exceeds it, so groups are re-read
    one = 40 * C.N_WAVE * 4
    small = open_dataset(tiny_dataset, columns=["object_id", "spectrum_flux"], cache_bytes=int(1.5 * one))
    reads.clear()
    assert [small[int(i)]["object_id"] for i in order] == order.tolist()
    assert 0 < small._cached_bytes <= int(1.5 * one) and len(reads) > n_groups


def test_is_cached_tells_whether_a_row_needs_the_disk(tiny_dataset):
    ds = open_dataset(tiny_dataset, columns=["object_id", "spectrum_flux"])
    assert not ds.is_cached(5) and not ds.is_cached(45)
    ds[5]
    group = ds._rg_index[0]             # row-group starts of shard 0 (rows 0-39)
    first, end = (int(group[i]) for i in np.searchsorted(group, 5, side="right") - [1, 0])
    assert all(ds.is_cached(r) for r in range(first, end)) and not ds.is_cached(45)
    assert not any(ds.is_cached(r) for r in range(40) if not first <= r < end)
    one = (end - first) * C.N_WAVE * 4  # a budget of one group: the older goes out
    small = open_dataset(tiny_dataset, columns=["object_id", "spectrum_flux"], cache_bytes=one)
    small[5], small[45]
    assert small.is_cached(45) and not small.is_cached(5)
    with pytest.raises(IndexError, match="out of range"):
        ds.is_cached(120)


def test_torch_dataloader_collates(tiny_dataset):
    torch = pytest.importorskip("torch")
    ds = open_dataset(tiny_dataset, columns=["object_id", "image", "redshift"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=0)))
    assert batch["image"].shape == (8, 3, 152, 152)
    assert batch["object_id"].tolist() == list(range(8))


def test_missing_shard_is_a_clear_error(tiny_dataset):
    (tiny_dataset / "part-00001.parquet").unlink()
    with pytest.raises(DatasetError, match="part-00001.parquet.*missing"):
        open_dataset(tiny_dataset)


def test_checksum_mismatch_is_detected(tiny_dataset):
    p = tiny_dataset / "part-00002.parquet"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="part-00002.parquet: sha256"):
        validate_dataset(tiny_dataset)


def test_wrong_shape_is_rejected(tmp_path):
    from galclip.data import Provenance, write_manifest, write_shard

    rows = random_rows(4)
    rows["image"] = rows["image"][:, :, :100, :100]
    shards = [write_shard(tmp_path / "part-00000.parquet", rows)]
    write_manifest(tmp_path, shards, Provenance(command="test"))
    with pytest.raises(DatasetError, match="column 'image' has shape \\(3, 100, 100\\)"):
        open_dataset(tmp_path)


def test_missing_column_and_not_a_dataset(tmp_path):
    from galclip.data import Provenance, write_manifest, write_shard

    with pytest.raises(DatasetError, match="no manifest"):
        open_dataset(tmp_path)
    rows = random_rows(4)
    del rows["redshift"]
    write_manifest(tmp_path, [write_shard(tmp_path / "part-00000.parquet", rows)],
                   Provenance(command="test"))
    with pytest.raises(DatasetError, match="required column 'redshift' is missing"):
        open_dataset(tmp_path)


def test_out_of_range_index(tiny_dataset):
    with pytest.raises(IndexError, match="row 500 out of range"):
        open_dataset(tiny_dataset)[500]
