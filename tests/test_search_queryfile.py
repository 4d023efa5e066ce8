"""Query files: picking one fibre of a multi-fibre DESI coadd, and flux-conserving resampling
of tabulated spectra onto the galclip grid with the errors propagated."""
from __future__ import annotations

import numpy as np
import pytest

from galclip import conventions as C
from galclip.search.queryfile import (
    QueryFileError,
    list_targets,
    read_spectrum_fits,
    resample_spectrum,
)

SV3 = "coadd-sv3-dark-26065.fits"  # 5 fibres: 2 unassigned, 1 sky, 2 targets (rows 2 and 4)


def test_multi_fibre_coadd_without_a_choice_lists_the_targetids(real_data):
    path = real_data / "desi" / SV3
    with pytest.raises(QueryFileError, match="holds 5 spectra") as e:
        read_spectrum_fits(path, str(path))
    for t in list_targets(path):
        assert f"TARGETID {t['targetid']}" in str(e.value)
    assert "--targetid" in str(e.value)


def test_targetid_and_row_pick_the_same_fibre(real_data):
    from astropy.io import fits

    path = real_data / "desi" / SV3
    targets = list_targets(path)
    assert [t["objtype"] for t in targets] == ["", "", "TGT", "SKY", "TGT"]
    tid = targets[4]["targetid"]
    by_id = read_spectrum_fits(path, targetid=tid)
    by_row = read_spectrum_fits(path, row=4)
    np.testing.assert_array_equal(by_id[0], by_row[0])
    other = read_spectrum_fits(path, row=2)
    assert not np.allclose(other[0], by_id[0])
    b = fits.getdata(path, "B_FLUX")[4]  # first B pixel is the grid's first pixel and B-only
    assert by_id[0][0] == pytest.approx(b[0], rel=1e-5)


def test_bad_choices_are_clear_errors(real_data):
    path = real_data / "desi" / SV3
    with pytest.raises(QueryFileError, match="TARGETID 5 is not in the FIBERMAP; available"):
        read_spectrum_fits(path, targetid=5)
    with pytest.raises(QueryFileError, match=r"row 9 out of range.*rows 0-4"):
        read_spectrum_fits(path, row=9)
    with pytest.raises(QueryFileError, match=r"row 1 \(TARGETID -2713415\).*no valid pixel"):
        read_spectrum_fits(path, row=1)


def test_single_fibre_coadd_needs_no_choice(real_data):
    flux, ivar = read_spectrum_fits(real_data / "desi" / "coadd-4-80613-thru20210324.fits")
    assert flux.shape == ivar.shape == (C.N_WAVE,) and (ivar > 0).mean() > 0.9


def test_resampling_conserves_line_flux_and_propagates_ivar():
    wave = np.arange(3499.8, 9900.0, 0.4)  # twice as fine as the galclip grid, edges aligned
    line = 50.0 * np.exp(-0.5 * ((wave - 6563.0) / 2.0) ** 2)
    flux, ivar = 1.0 + line, np.full(wave.shape, 4.0)
    f, iv = resample_spectrum(wave, flux, ivar)
    grid = C.wavelength_grid()
    near = np.abs(grid - 6563.0) < 30
    line_in = np.sum(line[np.abs(wave - 6563.0) < 30]) * 0.4
    line_out = np.sum(f[near] - 1.0) * C.WAVE_STEP
    assert line_out == pytest.approx(line_in, rel=0.01)
    inner = (grid > 4000) & (grid < 9000)
    np.testing.assert_allclose(iv[inner], 8.0, rtol=0.02)  # two input pixels per output pixel
    f2, iv2 = resample_spectrum(wave[wave > 5000], flux[wave > 5000], ivar[wave > 5000])
    assert iv2[grid < 4999].max() == 0 and f2[grid < 4999].max() == 0 and iv2[-1] > 0


def test_pixels_with_zero_ivar_do_not_leak_into_the_resampled_flux():
    wave = np.arange(3500.0, 9900.0, 0.4)
    flux, ivar = np.ones_like(wave), np.ones_like(wave)
    bad = (wave > 5000) & (wave < 5010)
    flux[bad], ivar[bad] = 1e6, 0.0
    f, iv = resample_spectrum(wave, flux, ivar)
    grid = C.wavelength_grid()
    assert np.abs(f[iv > 0] - 1.0).max() < 1e-6
    assert (iv[(grid > 5001) & (grid < 5009)] == 0).all()


def test_a_tabulated_query_file_propagates_ivar_instead_of_interpolating_it(tmp_path):
    """A fine table (0.4 A pixels, ivar 4) is read as 0.8 A pixels of twice the ivar, and a
    coarse one (1.6 A, ivar 4) as pixels of the same ivar; np.interp would give 4 in both."""
    from astropy.io import fits

    grid = C.wavelength_grid()
    inner = (grid > 4000) & (grid < 9000)
    for start, step, expect in ((3499.8, 0.4, 8.0), (3499.6, 1.6, 4.0)):  # pixel edges aligned
        wave = np.arange(start, 9900.0, step)
        line = 40.0 * np.exp(-0.5 * ((wave - 6563.0) / 3.0) ** 2)
        path = tmp_path / f"table-{step}.fits"
        fits.BinTableHDU.from_columns([fits.Column("wavelength", "D", array=wave),
                                       fits.Column("flux", "D", array=1.0 + line),
                                       fits.Column("ivar", "D", array=np.full(wave.shape, 4.0))]
                                      ).writeto(path)
        flux, ivar = read_spectrum_fits(path, path.name)
        np.testing.assert_allclose(ivar[inner], expect, rtol=0.02)
        near = np.abs(grid - 6563.0) < 30
        assert np.sum(flux[near] - 1.0) * C.WAVE_STEP == pytest.approx(
            np.sum(line[np.abs(wave - 6563.0) < 30]) * step, rel=0.02)   # line flux conserved
