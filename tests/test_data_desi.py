"""DESI readers on the real coadd/spectra/redrock files: grid, arm merging, redshifts, bad input."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from galclip import conventions as C
from galclip.data.desi import (
    RedshiftTable,
    arm_pixels,
    merge_arms,
    read_desi_spectra,
    read_redshifts,
)
from galclip.data.readers import ReaderError, RejectLog

GALAXIES = {  # coadd, redrock, redshift quoted in shared/data/real/README.md
    "4-80613-thru20210324": 0.3687,
    "special-dark-27247": 0.0073,
}


def _desi(real_data, name):
    return real_data / "desi" / name


@pytest.mark.parametrize("tag", sorted(GALAXIES))
def test_redshift_comes_back_exactly_from_redrock(real_data, tag):
    rr = _desi(real_data, f"redrock-{tag}.fits")
    batch, rejects = read_desi_spectra(_desi(real_data, f"coadd-{tag}.fits"), [rr])
    z_file = read_redshifts(rr)["Z"]
    assert len(batch["object_id"]) == 1 and not rejects.items
    assert batch["redshift"][0] == np.float32(z_file[0])          # bit-exact float32 of Z
    assert round(float(batch["redshift"][0]), 4) == GALAXIES[tag]
    assert batch["spectype"][0] == "GALAXY" and batch["zwarn"][0] == 0
    assert batch["spectrum_flux"].shape == (1, C.N_WAVE) == batch["spectrum_ivar"].shape
    assert batch["object_id"][0] == read_redshifts(rr)["TARGETID"][0]


def test_arms_are_placed_on_the_7781_pixel_grid_and_agree_in_overlaps(real_data):
    from astropy.io import fits

    path = _desi(real_data, "coadd-4-80613-thru20210324.fits")
    batch, _ = read_desi_spectra(path, [_desi(real_data, "redrock-4-80613-thru20210324.fits")])
    flux, ivar = batch["spectrum_flux"][0], batch["spectrum_ivar"][0]
    with fits.open(path) as h:
        arm = {a: (arm_pixels(path, a, h[f"{a}_WAVELENGTH"].data), h[f"{a}_FLUX"].data[0],
                   h[f"{a}_IVAR"].data[0]) for a in "BRZ"}
    covered = np.zeros(C.N_WAVE, int)
    for idx, _, _ in arm.values():
        covered[idx] += 1
    assert (covered >= 1).all() and (covered == 2).sum() == 51 + 126  # B/R and R/Z overlaps
    # outside overlaps the merged spectrum is the arm itself
    b_idx, b_flux, b_ivar = arm["B"]
    only_b = covered[b_idx] == 1
    np.testing.assert_allclose(flux[b_idx][only_b], b_flux[only_b], rtol=1e-6)
    # in overlaps: arms agree within noise, merged = ivar-weighted mean, ivar adds
    for a, b in (("B", "R"), ("R", "Z")):
        (ia, fa, va), (ib, fb, vb) = arm[a], arm[b]
        common, pa, pb = np.intersect1d(ia, ib, return_indices=True)
        ok = (va[pa] > 0) & (vb[pb] > 0)
        chi2 = (fa[pa] - fb[pb])[ok] ** 2 / (1 / va[pa] + 1 / vb[pb])[ok]
        assert chi2.mean() < 2.0
        want = (fa[pa] * va[pa] + fb[pb] * vb[pb]) / (va[pa] + vb[pb])
        np.testing.assert_allclose(flux[common][ok], want[ok], rtol=1e-5)
        np.testing.assert_allclose(ivar[common], (va[pa] + vb[pb]), rtol=1e-5)


def test_mask_nonzero_gets_zero_ivar(real_data, tmp_path):
    from astropy.io import fits

    src = _desi(real_data, "coadd-4-80613-thru20210324.fits")
    path = tmp_path / src.name
    shutil.copy(src, path)
    with fits.open(path, mode="update") as h:
        h["R_MASK"].data[0, 100:110] = 4           # flag ten R pixels (outside overlaps)
        r0 = arm_pixels(path, "R", h["R_WAVELENGTH"].data)[100]
    batch, _ = read_desi_spectra(path, [_desi(real_data, "redrock-4-80613-thru20210324.fits")])
    assert (batch["spectrum_ivar"][0, r0:r0 + 10] == 0).all()
    assert (batch["spectrum_ivar"][0, r0 + 10:r0 + 20] > 0).all()
    assert np.isfinite(batch["spectrum_flux"]).all()


def test_sky_fibres_and_missing_redshifts_are_reported_not_dropped(real_data):
    path = _desi(real_data, "coadd-sv3-dark-26065.fits")
    batch, rejects = read_desi_spectra(path)          # no redrock file for this tile
    assert batch == {}
    reasons = [r.reason.split(":")[0] for r in rejects.items]
    assert reasons.count("sky fibre") == 1 and reasons.count("no target") == 2
    assert reasons.count("no redshift") == 2 and len(rejects.items) == 5
    kept, _ = read_desi_spectra(path, require_redshift=False)
    assert len(kept["object_id"]) == 2 and np.isnan(kept["redshift"]).all()


def test_spectra_file_format_reads_and_compressed_mask_applies(real_data):
    batch, _ = read_desi_spectra(_desi(real_data, "spectra-sv3-dark-26065.fits"),
                                 require_redshift=False)
    assert batch["spectrum_flux"].shape[1] == C.N_WAVE
    assert (batch["spectrum_ivar"] == 0).any()        # its MASK HDUs flag pixels
    assert (batch["spectrum_ivar"] >= 0).all() and np.isfinite(batch["spectrum_flux"]).all()


def test_selection_by_spectype_and_zwarn(real_data):
    tag = "4-80613-thru20210324"
    rr = [_desi(real_data, f"redrock-{tag}.fits")]
    batch, rejects = read_desi_spectra(_desi(real_data, f"coadd-{tag}.fits"), rr, spectype="QSO")
    assert batch == {} and rejects.items[0].reason.startswith("spectype: GALAXY")
    batch, _ = read_desi_spectra(_desi(real_data, f"coadd-{tag}.fits"), rr, spectype="GALAXY",
                                 zwarn_zero=True)
    assert len(batch["object_id"]) == 1


def test_merge_arms_weights_by_inverse_variance():
    idx_a, idx_b = np.arange(0, 6), np.arange(4, 10)
    fa, fb = np.full((1, 6), 2.0), np.full((1, 6), 5.0)
    va, vb = np.full((1, 6), 1.0), np.full((1, 6), 3.0)
    good_b = np.ones((1, 6), bool)
    good_b[0, 1] = False                              # pixel 5 masked in arm b
    flux, ivar = merge_arms([(idx_a, fa, va, np.ones((1, 6), bool)), (idx_b, fb, vb, good_b)])
    assert flux[0, 4] == pytest.approx((2 * 1 + 5 * 3) / 4) and ivar[0, 4] == 4
    assert flux[0, 5] == 2 and ivar[0, 5] == 1
    assert ivar[0, 10:].sum() == 0 and flux[0, 10:].sum() == 0
    va[0, 2] = 0                                       # a pixel no arm measures: flux 0
    flux, ivar = merge_arms([(idx_a, fa, va, np.ones((1, 6), bool))])
    assert flux[0, 2] == 0 and ivar[0, 2] == 0


def test_off_grid_wavelengths_are_an_error(tmp_path):
    with pytest.raises(ReaderError, match="B_WAVELENGTH.*not on the"):
        arm_pixels(tmp_path / "x.fits", "B", np.arange(3600.3, 3700, 0.8))


def test_bad_data_names_file_hdu_and_row_or_becomes_a_reject(real_data, tmp_path):
    from astropy.io import fits

    tag = "4-80613-thru20210324"
    path = tmp_path / f"coadd-{tag}.fits"
    shutil.copy(_desi(real_data, f"coadd-{tag}.fits"), path)
    with fits.open(path, mode="update") as h:
        h["Z_IVAR"].data[0, 7] = -1.0
    rr = [_desi(real_data, f"redrock-{tag}.fits")]
    with pytest.raises(ReaderError, match=rf"{path.name}: Z_IVAR, row 0: .*negative"):
        read_desi_spectra(path, rr)
    batch, rejects = read_desi_spectra(path, rr, rejects=RejectLog(strict=False))
    assert batch == {} and rejects.items[0].reason.startswith("bad data: Z_IVAR")


def test_missing_hdu_and_duplicate_redshift_are_clear_errors(real_data, tmp_path):
    from astropy.io import fits

    tag = "4-80613-thru20210324"
    with fits.open(_desi(real_data, f"coadd-{tag}.fits")) as h:
        del h["R_MASK"]
        h.writeto(tmp_path / "no_mask.fits")
    with pytest.raises(ReaderError, match="no_mask.fits: HDU R_MASK: missing"):
        read_desi_spectra(tmp_path / "no_mask.fits")
    rr = _desi(real_data, f"redrock-{tag}.fits")
    with pytest.raises(ReaderError, match="more than one redshift file"):
        RedshiftTable([rr, rr])
