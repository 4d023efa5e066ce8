"""``galclip build-dataset``: cross-matching, unpaired rows, rejects, manifest, CLI."""
from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest

from galclip import conventions as C
from galclip.data import Provenance, open_dataset, write_manifest, write_shard
from galclip.data.build import BuildConfig, build_dataset
from galclip.data.legacysurvey import write_cutout_fits
from galclip.data.readers import ReaderError
from test_data_astroclip import write_astroclip_h5
from test_data_mmu_provabgs import write_mmu_desi, write_mmu_legacysurvey

TAGS = ("4-80613-thru20210324", "special-dark-27247")


def _fibermap(real_data, tag):
    from astropy.io import fits

    return fits.getdata(real_data / "desi" / f"coadd-{tag}.fits", "FIBERMAP")[0]


def _desi_cfg(real_data, out, images, **kw):
    d = real_data / "desi"
    return BuildConfig(out=str(out), spectra=[str(d / f"coadd-{t}.fits") for t in TAGS]
                       + [str(d / "coadd-sv3-dark-26065.fits")],
                       redshifts=[str(d / f"redrock-{t}.fits") for t in TAGS],
                       images=[str(p) for p in images], progress=False, **kw)


@pytest.fixture
def cutouts(real_data, tmp_path):
    """Galaxy 1: cutout 0.4" away, no id. Galaxy 2: TARGETID in the header, 5" away. One stray."""
    from astropy.io import fits

    d = tmp_path / "cutouts"
    d.mkdir()
    rng = np.random.default_rng(0)
    g1, g2 = _fibermap(real_data, TAGS[0]), _fibermap(real_data, TAGS[1])
    write_cutout_fits(d / "g1.fits", rng.normal(size=(3, 152, 152)), g1["TARGET_RA"],
                      g1["TARGET_DEC"] + 0.4 / 3600)
    write_cutout_fits(d / "g2.fits", rng.normal(size=(3, 152, 152)), g2["TARGET_RA"],
                      g2["TARGET_DEC"] + 5 / 3600)
    fits.setval(d / "g2.fits", "TARGETID", value=int(g2["TARGETID"]))
    write_cutout_fits(d / "stray.fits", rng.normal(size=(3, 152, 152)), 10.0, 10.0)
    return d


def _rejects(out):
    with open(out / "rejects.csv") as f:
        return list(csv.DictReader(f))


def test_masked_rows_are_stored_as_null_and_read_back_as_nan(tmp_path):
    rows = {"object_id": np.arange(3, dtype=np.int64), "ra": np.zeros(3), "dec": np.zeros(3),
            "redshift": np.zeros(3, np.float32),
            "image": np.ma.MaskedArray(np.ones((3, *C.IMAGE_SHAPE), np.float32),
                                       mask=np.zeros((3, *C.IMAGE_SHAPE), bool)),
            "spectrum_flux": np.ones((3, C.N_WAVE), np.float32),
            "spectrum_ivar": np.ones((3, C.N_WAVE), np.float32), "tag": np.array(["a", "", "c"])}
    rows["image"].mask[1] = True
    write_manifest(tmp_path, [write_shard(tmp_path / "part-00000.parquet", rows)],
                   Provenance(command="test"))
    ds = open_dataset(tmp_path)
    assert np.isnan(ds[1]["image"]).all() and (ds[2]["image"] == 1).all()
    assert ds[2]["tag"] == "c"


def test_desi_spectra_match_cutouts_by_targetid_and_position(real_data, cutouts, tmp_path):
    out = tmp_path / "ds"
    result = build_dataset(_desi_cfg(real_data, out, [cutouts]))
    r = result["report"]
    assert (r.rows_written, r.matched_by_id, r.matched_by_position) == (2, 1, 1)
    assert r.unmatched_images == 1 and r.unmatched_spectra == 0
    ds = open_dataset(out)
    rows = {ds[i]["object_id"]: ds[i] for i in range(len(ds))}
    g1, g2 = (int(_fibermap(real_data, t)["TARGETID"]) for t in TAGS)
    assert rows[g1]["match"] == "position" and rows[g1]["match_sep_arcsec"] == pytest.approx(
        0.4, abs=0.01)
    assert rows[g2]["match"] == "id" and rows[g2]["source_image"] == "g2.fits"
    assert round(rows[g1]["redshift"], 4) == 0.3687 and round(rows[g2]["redshift"], 4) == 0.0073
    assert rows[g1]["has_image"] and rows[g1]["has_spectrum"]
    reasons = [x["reason"].split(":")[0] for x in _rejects(out)]
    assert sorted(set(reasons)) == ["no redshift", "no target", "sky fibre", "unmatched image"]
    m = json.loads((out / "manifest.json").read_text())
    inputs = {e["path"]: e for e in m["provenance"]["inputs"]}
    g1_path = str((real_data / "desi" / f"coadd-{TAGS[0]}.fits").resolve())
    assert inputs[g1_path]["sha256"] == hashlib.sha256(open(g1_path, "rb").read()).hexdigest()
    assert len(inputs) == 6 and m["build"]["matched_by_id"] == 1
    assert m["build"]["rejected"]["sky fibre"] == 1


def test_match_radius_is_configurable(real_data, cutouts, tmp_path):
    r = build_dataset(_desi_cfg(real_data, tmp_path / "ds", [cutouts],
                                match_radius_arcsec=0.2))["report"]
    assert (r.matched_by_id, r.matched_by_position, r.unmatched_spectra) == (1, 0, 1)


def test_keep_unpaired_marks_the_missing_modality(real_data, cutouts, tmp_path):
    out = tmp_path / "ds"
    r = build_dataset(_desi_cfg(real_data, out, [cutouts], match_radius_arcsec=0.2,
                                keep_unpaired=True, shard_size=1))["report"]
    assert (r.rows_written, r.written_spectrum_only, r.written_image_only) == (4, 1, 2)
    ds = open_dataset(out)
    assert len(ds.manifest["shards"]) == 4                       # streamed, one row per shard
    cols = ds.read_columns(["has_image", "has_spectrum", "object_id"])
    for i in range(len(ds)):
        row = ds[i]
        assert np.isnan(row["image"]).all() != row["has_image"]
        assert np.isnan(row["spectrum_flux"]).all() != row["has_spectrum"]
    assert (cols["has_image"] & cols["has_spectrum"]).sum() == 1


def test_folders_are_expanded_for_spectra_and_redshifts(real_data, tmp_path):
    d = str(real_data / "desi")
    r = build_dataset(BuildConfig(out=str(tmp_path / "ds"), spectra=[d], redshifts=[d],
                                  keep_unpaired=True, progress=False))["report"]
    assert r.rows_written == r.written_spectrum_only == 2           # the two redrock galaxies
    # coadd-sv3 and spectra-sv3 are the same tile: its fibres are reported once per file
    assert r.rejected == {"no target": 7, "no redshift": 6, "sky fibre": 2}


def test_bad_image_stops_the_build_or_goes_to_rejects(real_data, cutouts, tmp_path):
    from astropy.io import fits

    with fits.open(cutouts / "g1.fits", mode="update") as h:
        h[0].data[1, 3, 3] = np.nan
    with pytest.raises(ReaderError, match=r"g1.fits: primary HDU: bad data: image: 1 non-finite pixels"):
        build_dataset(_desi_cfg(real_data, tmp_path / "a", [cutouts]))
    out = tmp_path / "b"
    r = build_dataset(_desi_cfg(real_data, out, [cutouts], skip_bad=True))["report"]
    assert r.rows_written == 1
    assert any(x["file"].endswith("g1.fits") and "non-finite" in x["reason"]
               for x in _rejects(out))


def test_duplicate_objects_are_rejected(real_data, cutouts, tmp_path):
    cfg = _desi_cfg(real_data, tmp_path / "a", [cutouts], keep_unpaired=True)
    cfg.spectra.append(cfg.spectra[0])
    with pytest.raises(ReaderError, match="duplicate object_id"):
        build_dataset(cfg)
    cfg.out, cfg.skip_bad = str(tmp_path / "b"), True
    build_dataset(cfg)
    assert sum("duplicate" in x["reason"] for x in _rejects(tmp_path / "b")) == 1


def test_mmu_parts_cross_match_by_position(tmp_path):
    mmu = tmp_path / "mmu"
    (mmu / "legacysurvey" / "healpix=1").mkdir(parents=True)
    (mmu / "desi" / "healpix=1").mkdir(parents=True)
    ra, dec = np.array([150.0, 150.01, 151.0]), np.array([2.0, 2.0, 2.5])
    write_mmu_legacysurvey(mmu / "legacysurvey" / "healpix=1" / "001-of-001.hdf5", ra, dec)
    write_mmu_desi(mmu / "desi" / "healpix=1" / "001-of-001.hdf5", [11, 12],
                   ra[:2] + 0.5 / 3600, dec[:2], [0.1, 0.2])
    out = tmp_path / "ds"
    r = build_dataset(BuildConfig(out=str(out), mmu=[str(mmu)], progress=False))["report"]
    assert (r.rows_written, r.matched_by_position, r.unmatched_images) == (2, 2, 1)
    ds = open_dataset(out)
    assert ds.shape("image_ivar") == C.IMAGE_SHAPE and list(ds.read_columns(
        ["object_id"])["object_id"]) == [11, 12]


def test_astroclip_with_provabgs_catalog(tmp_path):
    h5py = pytest.importorskip("h5py")
    write_astroclip_h5(tmp_path / "astroclip.h5", [5])
    cat = tmp_path / "provabgs.hdf5"
    with h5py.File(cat, "w") as f:
        f["object_id"] = np.array([10**15, 10**15 + 1])
        f["ra"], f["dec"] = np.array([1.0, 2.0]), np.array([3.0, 4.0])
        f["LOG_MSTAR"] = np.array([10.0, 11.0])
        f["AVG_SFR"] = np.array([1.0, 10.0])
        f["Z_MW"], f["TAGE_MW"] = np.array([0.02, 0.01]), np.array([5.0, 8.0])
    out = tmp_path / "ds"
    r = build_dataset(BuildConfig(out=str(out), astroclip=[str(tmp_path / "astroclip.h5")],
                                  catalog=str(cat), progress=False))["report"]
    assert r.rows_written == 5 and r.paired_inputs == 5
    ds = open_dataset(out)
    c = ds.read_columns(["ra", "log_ssfr", "split", "spectrum_ivar"])
    assert c["ra"][1] == 2.0 and np.isnan(c["ra"][2])                 # position from PROVABGS
    assert c["log_ssfr"][1] == pytest.approx(-10.0) and np.isnan(c["log_ssfr"][3])
    assert list(c["split"]) == ["train"] * 4 + ["test"] and (c["spectrum_ivar"] == 1).all()
    notes = ds.manifest["notes"]
    assert "ivar = 1" in notes["astroclip"]["spectrum_ivar"]
    assert "Z_MW" in notes["provabgs"]["log_ssfr"]


def test_cli_build_dataset(real_data, cutouts, tmp_path, capsys):
    from galclip.cli import main

    d = real_data / "desi"
    out = tmp_path / "ds"
    rc = main(["build-dataset", "--spectra", str(d / f"coadd-{TAGS[0]}.fits"),
               "--redshifts", str(d / f"redrock-{TAGS[0]}.fits"), "--images", str(cutouts),
               "--out", str(out), "--spectype", "GALAXY", "--zwarn-zero", "--no-progress"])
    assert rc == 0 and "1 rows written" in capsys.readouterr().out
    assert main(["build-dataset", "--images", str(cutouts), "--out", str(out)]) == 2
    assert "already holds a dataset" in capsys.readouterr().err


@pytest.mark.slow
def test_interrupted_build_resumes_without_rewriting_finished_shards(real_data, cutouts,
                                                                     tmp_path, monkeypatch):
    import galclip.data.build as build

    kw = dict(match_radius_arcsec=0.2, keep_unpaired=True, shard_size=1)
    build_dataset(_desi_cfg(real_data, tmp_path / "ref", [cutouts], **kw))
    calls, real_write = [], build.write_shard

    def dying_write(path, cols):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt                   # killed while writing the third shard
        return real_write(path, cols)

    out = tmp_path / "ds"
    monkeypatch.setattr(build, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(_desi_cfg(real_data, out, [cutouts], **kw))
    assert not (out / "manifest.json").exists() and (out / ".build-state.json").exists()
    first = (out / "part-00000.parquet").stat().st_mtime_ns
    calls.clear()
    r = build_dataset(_desi_cfg(real_data, out, [cutouts], **kw))["report"]
    assert r.resumed_rows == 2 and calls == ["part-00002.parquet", "part-00003.parquet"]
    assert (out / "part-00000.parquet").stat().st_mtime_ns == first
    assert not (out / ".build-state.json").exists()
    ref, got = open_dataset(tmp_path / "ref"), open_dataset(out)
    for c in ("object_id", "has_image", "redshift"):
        np.testing.assert_array_equal(got.read_columns([c])[c], ref.read_columns([c])[c])
    np.testing.assert_array_equal(got[3]["image"], ref[3]["image"])
    with pytest.raises(FileExistsError, match="other inputs or options"):
        (out / "manifest.json").unlink()
        (out / ".build-state.json").write_text(json.dumps({"fingerprint": "x", "shards": []}))
        build_dataset(_desi_cfg(real_data, out, [cutouts], **kw))


def test_id_set_stays_exact_across_block_merges():
    from galclip.data.build import IdSet

    ids = np.random.default_rng(0).choice(10**12, size=500, replace=False)
    s = IdSet(block=64)
    for i in ids[:300]:
        s.add(int(i))
    assert len(s.base) == 256 and len(s.recent) == 44
    assert all(int(i) in s for i in ids[:300]) and not any(int(i) in s for i in ids[300:])


def test_truncated_hdf5_inputs_fail_cleanly_or_are_rejected(tmp_path):
    mmu = tmp_path / "mmu"
    mmu.mkdir()
    ra, dec = np.array([150.0, 150.01]), np.array([2.0, 2.0])
    write_mmu_desi(mmu / "desi.hdf5", [11, 12], ra, dec, [0.1, 0.2])
    write_mmu_legacysurvey(tmp_path / "ls.hdf5", ra, dec)
    blob = (tmp_path / "ls.hdf5").read_bytes()
    (tmp_path / "ls.hdf5").write_bytes(blob[: len(blob) // 3])
    write_astroclip_h5(tmp_path / "ac.h5", [4])
    blob = (tmp_path / "ac.h5").read_bytes()
    (tmp_path / "ac.h5").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ReaderError, match=r"ls.hdf5: HDF5: unreadable file: cannot read \(OSError"):
        build_dataset(BuildConfig(out=str(tmp_path / "a"), mmu=[str(mmu)],
                                  images=[str(tmp_path / "ls.hdf5")], progress=False))
    with pytest.raises(ReaderError, match=r"ac.h5"):
        build_dataset(BuildConfig(out=str(tmp_path / "b"), astroclip=[str(tmp_path / "ac.h5")],
                                  mmu=[str(mmu)], keep_unpaired=True, progress=False))
    r = build_dataset(BuildConfig(out=str(tmp_path / "c"), astroclip=[str(tmp_path / "ac.h5")],
                                  mmu=[str(mmu)], keep_unpaired=True, skip_bad=True,
                                  progress=False))["report"]
    assert r.written_spectrum_only == 2
    assert any(x["file"].endswith("ac.h5") and x["reason"].startswith("unreadable file")
               for x in _rejects(tmp_path / "c"))
    r = build_dataset(BuildConfig(out=str(tmp_path / "d"), mmu=[str(mmu)], skip_bad=True,
                                  images=[str(tmp_path / "ls.hdf5")], keep_unpaired=True,
                                  progress=False))["report"]
    assert r.written_spectrum_only == 2
    assert any(x["file"].endswith("ls.hdf5") for x in _rejects(tmp_path / "d"))
