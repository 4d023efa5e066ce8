"""Multimodal Universe HDF5 (Legacy Survey, DESI) and the PROVABGS catalogue, in their schemas."""
from __future__ import annotations

import numpy as np
import pytest

from galclip import conventions as C
from galclip.data.mmu import iter_mmu_desi, iter_mmu_legacysurvey, mmu_kind
from galclip.data.provabgs import PropertyCatalog, read_provabgs
from galclip.data.readers import ReaderError, RejectLog

h5py = pytest.importorskip("h5py")


def write_mmu_legacysurvey(path, ra, dec, seed=0, band_order=("des-g", "des-r", "des-i",
                                                                "des-z")):
    """As MultimodalUniverse scripts/legacysurvey/build_parent_sample.py writes it."""
    n = len(ra)
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, 4, 160, 160)).astype(np.float32)
    ivar = rng.uniform(1, 2, size=(n, 4, 160, 160)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["object_id"] = np.array([f"1054p567-{i}".encode() for i in range(n)],
                                  dtype=h5py.string_dtype("utf-8", 16))
        f["ra"], f["dec"] = ra, dec
        f["image_array"], f["image_ivar"] = img, ivar
        f["image_band"] = np.array([[b.encode() for b in band_order]] * n,
                                   dtype=h5py.string_dtype("utf-8", 5))
        f["image_mask"] = np.zeros((n, 160, 160), bool)
        f["image_psf_fwhm"] = np.ones((n, 4), np.float32)
        f["image_scale"] = np.full((n, 4), 0.262, np.float32)
    return img, ivar


def write_mmu_desi(path, targetid, ra, dec, z, seed=0):
    """As MultimodalUniverse scripts/desi/build_parent_sample.py writes it."""
    n = len(targetid)
    rng = np.random.default_rng(seed)
    flux = rng.normal(size=(n, C.N_WAVE)).astype(np.float32)
    ivar = rng.uniform(1, 2, size=(n, C.N_WAVE)).astype(np.float32)
    mask = np.zeros((n, C.N_WAVE), bool)
    mask[:, :10] = True
    with h5py.File(path, "w") as f:
        f["TARGETID"] = f["object_id"] = np.asarray(targetid, np.int64)
        f["ra"], f["dec"], f["Z"] = ra, dec, np.asarray(z)
        f["ZWARN"] = np.zeros(n, np.int64)
        f["SPECTYPE"] = np.array([b"GALAXY"] * n)
        f["spectrum_lambda"] = np.repeat(C.wavelength_grid()[None].astype(np.float32), n, 0)
        f["spectrum_flux"], f["spectrum_ivar"], f["spectrum_mask"] = flux, ivar, mask
        f["spectrum_lsf_sigma"] = np.ones((n, C.N_WAVE), np.float32)
    return flux


def test_mmu_legacysurvey_selects_grz_by_name_and_crops(tmp_path):
    path = tmp_path / "001-of-001.hdf5"
    order = ("des-z", "des-i", "des-g", "des-r")                     # shuffled on purpose
    img, ivar = write_mmu_legacysurvey(path, np.array([10.0, 10.1]), np.array([1.0, 1.1]),
                                       band_order=order)
    assert mmu_kind(path) == "legacysurvey"
    b = next(iter_mmu_legacysurvey(path))
    assert b["image"].shape == (2, *C.IMAGE_SHAPE) and b["image_resized"].all()
    np.testing.assert_array_equal(b["image"][1], img[1][[2, 3, 0], 4:156, 4:156])
    np.testing.assert_array_equal(b["image_ivar"][0], ivar[0][[2, 3, 0], 4:156, 4:156])
    assert b["source_object_id"][1] == "1054p567-1" and (b["object_id"] < 0).all()


def test_mmu_desi_mask_grid_and_bad_rows(tmp_path):
    path = tmp_path / "desi.hdf5"
    flux = write_mmu_desi(path, [5, 6, 7], np.zeros(3), np.zeros(3), [0.1, 0.2, 0.3])
    assert mmu_kind(path) == "desi"
    b = next(iter_mmu_desi(path))
    assert (b["spectrum_ivar"][:, :10] == 0).all() and (b["spectrum_ivar"][:, 10:] > 0).all()
    np.testing.assert_array_equal(b["spectrum_flux"][:, 10:], flux[:, 10:])
    assert list(b["object_id"]) == [5, 6, 7] and b["redshift"][2] == np.float32(0.3)
    assert list(b["spectype"]) == ["GALAXY"] * 3
    with h5py.File(path, "a") as f:
        f["spectrum_ivar"][1, 50] = -1.0
    with pytest.raises(ReaderError, match=r"desi.hdf5: spectrum_ivar, row 1: bad data"):
        list(iter_mmu_desi(path))
    rejects = RejectLog(strict=False)
    assert list(next(iter_mmu_desi(path, rejects))["object_id"]) == [5, 7]
    with h5py.File(path, "a") as f:
        f["spectrum_lambda"][0] += 2.0
    with pytest.raises(ReaderError, match="spectrum_lambda.*grid"):
        list(iter_mmu_desi(path))


def _provabgs_columns(n=4):
    return {"TARGETID": np.arange(n, dtype=np.int64) + 39633345008634465,
            "RA": np.linspace(100, 101, n), "DEC": np.linspace(50, 51, n),
            "Z_HP": np.linspace(0.1, 0.4, n), "MAG_G": np.full(n, 19.0),
            "PROVABGS_LOGMSTAR_BF": np.array([10.0, 11.0, -999.0, 9.5]),
            "PROVABGS_THETA_BF": np.ones((n, 13)), "PROVABGS_MCMC": np.ones((n, 100, 13))}


@pytest.mark.filterwarnings("ignore:table path was not set")  # astropy writes its meta
def test_provabgs_vac_astropy_table_layout(tmp_path):
    from astropy.table import Table

    path = tmp_path / "BGS_ANY_full.provabgs.sv3.v0.hdf5"
    Table(_provabgs_columns()).write(str(path), format="hdf5", path="__astropy_table__",
                                    serialize_meta=True)
    cat = read_provabgs(path)
    np.testing.assert_array_equal(cat["log_mstar"], np.float32([10.0, 11.0, np.nan, 9.5]))
    assert set(cat["unavailable"]) == {"log_sfr", "log_ssfr", "logz_mw", "tage_mw"}
    assert np.isnan(cat["log_ssfr"]).all() and cat["ra"][1] == pytest.approx(100 + 1 / 3)


def test_provabgs_ssfr_is_log_sfr_minus_log_mstar(tmp_path):
    path = tmp_path / "provabgs.hdf5"                                 # MMU / AstroCLIP column form
    with h5py.File(path, "w") as f:
        f["object_id"] = np.array([b"39633345008634465", b"39633345008634466"])
        f["ra"], f["dec"] = np.array([1.0, 2.0]), np.array([3.0, 4.0])
        f["LOG_MSTAR"] = np.array([10.0, 11.0], np.float32)
        f["AVG_SFR"] = np.array([1.0, 10.0], np.float32)
        f["Z_MW"] = np.array([0.02, 0.01], np.float32)
        f["TAGE_MW"] = np.array([5.0, 8.0], np.float32)
    cat = PropertyCatalog(path)
    cols = cat.columns_for(np.array([39633345008634466, 1, 39633345008634465]))
    np.testing.assert_allclose(cols["log_ssfr"], [1 - 11, np.nan, 0 - 10])
    np.testing.assert_allclose(cols["logz_mw"], [-2, np.nan, np.log10(0.02)], rtol=1e-6)
    np.testing.assert_allclose(cols["tage_mw"], [8, np.nan, 5])
    # not AstroCLIP's ln(SFR) - ln(Z_MW)
    assert cols["log_ssfr"][0] != pytest.approx(np.log(10.0) - np.log(0.01))


def test_provabgs_missing_mass_column_is_an_error(tmp_path):
    path = tmp_path / "p.hdf5"
    with h5py.File(path, "w") as f:
        f["TARGETID"] = np.arange(3)
    with pytest.raises(ReaderError, match="p.hdf5: column LOG_MSTAR/PROVABGS_LOGMSTAR_BF/PROVABGS_LOGMSTAR"):
        read_provabgs(path)


@pytest.mark.filterwarnings("ignore:table path was not set")
def test_provabgs_vac_derived_columns_and_posterior_samples(tmp_path):
    """A VAC that carries PROVABGS_AVGSFR_1GYR / Z_MW / TAGE_MW: best-fit values are used, a
    column of posterior samples is reduced to its median."""
    from astropy.table import Table

    cols = _provabgs_columns()
    cols["PROVABGS_AVGSFR_1GYR_BF"] = np.array([1.0, 10.0, 1.0, 0.1])
    cols["PROVABGS_Z_MW"] = np.array([[0.01, 0.02, 0.03]] * 4)        # (N, samples)
    cols["PROVABGS_TAGE_MW_BF"] = np.array([2.0, 9.0, 5.0, 4.0])
    path = tmp_path / "vac.hdf5"
    Table(cols).write(str(path), format="hdf5", path="__astropy_table__", serialize_meta=True)
    cat = read_provabgs(path)
    assert cat["unavailable"] == []
    np.testing.assert_allclose(cat["log_ssfr"], [0 - 10, 1 - 11, np.nan, -1 - 9.5], rtol=1e-6)
    np.testing.assert_allclose(cat["logz_mw"][[0, 1, 3]], np.log10(0.02), rtol=1e-6)
    np.testing.assert_allclose(cat["tage_mw"], [2, 9, np.nan, 4])
