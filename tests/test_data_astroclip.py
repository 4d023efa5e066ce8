"""AstroCLIP HDF5 and Hugging Face forms: layout transpose, ivar = 1, the 80/20 split, bad shapes."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from galclip import conventions as C
from galclip.data.astroclip import iter_astroclip_h5, iter_astroclip_hf
from galclip.data.readers import ReaderError


def _stein_cubes(n, seed=0):
    """Stein-style (N, 3, y, x) cubes whose pixels differ along every axis."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3, C.IMAGE_SIZE, C.IMAGE_SIZE)).astype(np.float32)


def _spectra(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, C.N_WAVE, 1)).astype(np.float32)


def _collect(batches):
    batches = list(batches)
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def write_astroclip_h5(path, group_sizes, seed=0):
    """Exactly as AstroCLIP's export_data.py: images = stein.T (152, 152, 3), spectra (7781, 1)."""
    import h5py

    truth, start = [], 0
    with h5py.File(path, "w") as f:
        for g, n in enumerate(group_sizes):
            cubes, spec = _stein_cubes(n, seed + g), _spectra(n, seed + g)
            grp = f.create_group(str(g))
            grp.create_dataset("images", data=[c.T for c in cubes])
            grp.create_dataset("spectra", data=spec)
            grp.create_dataset("redshifts", data=np.linspace(0.05, 0.5, n))
            grp.create_dataset("targetids", data=np.arange(start, start + n) + 10**15)
            truth.append((cubes, spec))
            start += n
    return truth


def test_h5_layout_is_inverted_exactly_and_split_is_80_20_per_group(tmp_path):
    path = tmp_path / "astroclip_desi.1.1.5.h5"
    truth = write_astroclip_h5(path, [10, 5])
    got = _collect(iter_astroclip_h5(path, chunk=4))
    assert got["image"].shape == (15, *C.IMAGE_SHAPE)
    np.testing.assert_array_equal(got["image"][:10], truth[0][0])    # back to (band, y, x)
    np.testing.assert_array_equal(got["image"][10:], truth[1][0])
    np.testing.assert_array_equal(got["spectrum_flux"][:10], truth[0][1][:, :, 0])
    assert list(got["split"]) == ["train"] * 8 + ["test"] * 2 + ["train"] * 4 + ["test"]
    assert (got["spectrum_ivar"] == 1).all()
    assert got["object_id"][0] == 10**15 and np.isnan(got["ra"]).all()


def test_h5_nonfinite_flux_gets_zero_ivar_and_missing_dataset_errors(tmp_path):
    import h5py

    path = tmp_path / "a.h5"
    write_astroclip_h5(path, [4])
    with h5py.File(path, "a") as f:
        f["0/spectra"][1, 100:105, 0] = np.nan
    got = _collect(iter_astroclip_h5(path))
    assert (got["spectrum_ivar"][1, 100:105] == 0).all() and got["spectrum_ivar"][1].sum() == 7776
    assert np.isfinite(got["spectrum_flux"]).all()
    with h5py.File(path, "a") as f:
        del f["0/redshifts"]
    with pytest.raises(ReaderError, match="a.h5: group '0' dataset 'redshifts': missing"):
        list(iter_astroclip_h5(path))


def _nested(values: np.ndarray) -> pa.Array:
    """(N, *shape) numpy -> nested Arrow lists, as datasets' Array2D/Array3D store them."""
    arr = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        arr = pa.ListArray.from_arrays(pa.array(np.arange(0, len(arr) + 1, size, dtype=np.int32)),
                                       arr)
    return arr


def _hf_table(n, seed):
    cubes, spec = _stein_cubes(n, seed), _spectra(n, seed)
    table = pa.table({"image": _nested(np.stack([c.T for c in cubes])),
                      "spectrum": _nested(spec),
                      "redshift": pa.array(np.linspace(0.1, 0.2, n).astype(np.float32)),
                      "targetid": pa.array(np.arange(n, dtype=np.int64) + 100 * seed)})
    return table, cubes


def test_hf_parquet_shards(tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    train, cubes = _hf_table(3, 1)
    test, _ = _hf_table(2, 2)
    pq.write_table(train, tmp_path / "data" / "train-00000-of-00001.parquet")
    pq.write_table(test, tmp_path / "data" / "test-00000-of-00001.parquet")
    got = _collect(iter_astroclip_hf(tmp_path, chunk=2))
    assert sorted(got["split"]) == ["test"] * 2 + ["train"] * 3
    i = list(got["object_id"]).index(100)
    np.testing.assert_array_equal(got["image"][i], cubes[0])


def test_hf_save_to_disk_folder(tmp_path):
    for split, seed in (("train", 3), ("test", 4)):
        d = tmp_path / split
        d.mkdir()
        table, _ = _hf_table(2, seed)
        with pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
        (d / "state.json").write_text(json.dumps(
            {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": split}))
        (d / "dataset_info.json").write_text("{}")
    (tmp_path / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    got = _collect(iter_astroclip_hf(tmp_path))
    assert list(got["split"]) == ["train", "train", "test", "test"]
    assert got["spectrum_flux"].shape == (4, C.N_WAVE)


def test_hf_wrong_image_shape_names_column(tmp_path):
    import pyarrow.parquet as pq

    table, _ = _hf_table(2, 5)
    bad = np.zeros((2, 152, 3, 152), np.float32)                    # channels in the middle
    table = table.set_column(0, "image", _nested(bad))
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(ReaderError, match="train.parquet: column 'image', row 0: axis 1 has length 3"):
        list(iter_astroclip_hf(tmp_path / "train.parquet"))
