"""Spectra without an inverse variance: the noise estimated from the flux (galclip.data.noise),
checked against known noise, against the pipeline ivar of real DESI coadds, and carried as
``ivar_estimated`` through the query readers and build-dataset."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from galclip import conventions as C
from galclip.data.noise import DESI_SEGMENTS, estimate_grid_ivar, estimate_ivar, estimate_sigma
from galclip.search.queryfile import IvarEstimatedWarning, QueryFileError, read_spectrum_fits

ANDES = "desi-andes"
BGS = "coadd-bgs-66003-20200315.fits"


def _galaxy(seed: int = 0):
    """A continuum with a 4000 A break, emission lines and noise rising to the red (known)."""
    rng = np.random.default_rng(seed)
    wave = C.wavelength_grid()
    cont = 3.0 + 2.0 * (wave > 4500) + 0.3 * np.sin(wave / 300.0)
    lines = sum(a * np.exp(-0.5 * ((wave - w) / 2.0) ** 2)
                for a, w in ((40, 4400), (25, 5900), (60, 7400), (30, 8700)))
    sigma = 0.5 + 1.5 * (wave - 3600) / 6224 + 0.8 * (wave > 7570)   # jumps at the Z arm
    return cont + lines + sigma * rng.standard_normal(wave.size), sigma


def test_estimated_noise_follows_the_true_noise_of_a_simulated_spectrum():
    flux, sigma = _galaxy()
    est = estimate_sigma(flux, starts=DESI_SEGMENTS)
    ratio = est / sigma
    assert np.median(ratio) == pytest.approx(1.0, abs=0.06)
    assert np.percentile(np.abs(np.log(ratio)), 90) < 0.3       # local, not one global value
    z_arm = C.wavelength_grid() > 7700
    assert np.median(est[z_arm]) > 1.2 * np.median(est[~z_arm])  # follows the jump at the arm


def test_smoothed_noise_is_read_at_its_recorded_level_and_white_noise_is_left_alone():
    """A publisher's Gaussian smoothing (2.2 px) hides the noise from the two-pixel DER_SNR; the
    block check sees it and returns the noise of the spectrum before smoothing."""
    from scipy.ndimage import gaussian_filter1d

    from galclip.data.noise import CORRELATED, correlation_factor

    flux, sigma = _galaxy(3)
    assert correlation_factor(flux, starts=DESI_SEGMENTS) < CORRELATED
    white = estimate_sigma(flux, starts=DESI_SEGMENTS)
    assert np.median(white / sigma) == pytest.approx(1.0, abs=0.06)   # unchanged
    smooth = gaussian_filter1d(flux, 2.2)
    ratio = estimate_sigma(smooth, starts=DESI_SEGMENTS) / sigma
    assert np.median(ratio) == pytest.approx(1.0, abs=0.2)            # the pixel DER_SNR: ~0.08


def test_the_andes_tables_are_smoothed_and_read_at_a_survey_like_depth(real_data):
    """The Andes flux tables: neighbouring residuals correlated (0.95 at one pixel), so their
    noise is rescaled; their median S/N per pixel then lies in 1-20, like DESI survey spectra,
    not the 60-260 the pixel DER_SNR alone gives."""
    from galclip.data.desi_tables import read_flux_table
    from galclip.data.noise import CORRELATED, correlation_factor

    _, flux, ivar = read_flux_table(real_data / ANDES / BGS)
    for f, iv in zip(flux, ivar, strict=True):
        good = iv > 0
        assert correlation_factor(f, good, starts=DESI_SEGMENTS) > 5 * CORRELATED
        assert 1 < np.median(np.abs(f[good]) * np.sqrt(iv[good])) < 20


def test_a_constant_ivar_is_never_assumed():
    flux, sigma = _galaxy(1)
    ivar = estimate_grid_ivar(flux)
    assert (ivar > 0).all()
    assert ivar[:500].mean() > 3 * ivar[-500:].mean()      # blue pixels less noisy than red


def test_bad_pixels_get_no_ivar_and_do_not_count():
    flux, sigma = _galaxy(2)
    good = np.ones(flux.size, bool)
    good[1000:1040] = False
    flux[1000:1040] = 1e5                                   # masked garbage
    ivar = estimate_grid_ivar(flux, good)
    assert (ivar[1000:1040] == 0).all()
    near = np.r_[900:1000, 1040:1140]
    assert 0.6 < np.median(ivar[near] * sigma[near] ** 2) < 1.6   # garbage would give ~1e-10
    assert (estimate_ivar(np.full(200, 3.0)) == 0).all()    # a constant run is no measurement


def test_flux_far_below_zero_is_a_bad_pixel_and_an_emission_line_is_not():
    """A file without ivar has no mask either: a bad column (flux tens of sigma below zero) gets
    ivar 0, an emission line of the same size keeps its weight, the rest is unchanged."""
    flux, sigma = _galaxy(4)
    clean = estimate_grid_ivar(flux)
    bad = flux.copy()
    bad[2000:2020] = -40.0 * sigma[2000:2020]      # a failed column, deep below zero
    bad[5000:5005] += 40.0 * sigma[5000:5005]      # a narrow line, as far above the continuum
    ivar = estimate_grid_ivar(bad)
    assert (ivar[2000:2020] == 0).all()
    assert (ivar[5000:5005] > 0).all()
    away = np.r_[0:1800, 2200:4800, 5200:flux.size]
    assert (ivar[away] > 0).all()
    assert np.median(np.abs(ivar[away] / clean[away] - 1)) < 0.05
    assert (clean > 0).all()                       # noise alone never trips the rule here


def test_the_bad_column_of_a_real_lrg_table_is_masked(real_data):
    """The Andes LRG table's target at z 0.583 carries a bad column at 3650-3680 A (to -78 x
    1e-17 on a continuum of ~0.2), unmasked in the file; the estimate gives it no weight and
    leaves the BGS table's spectra whole."""
    from galclip.data.desi_tables import read_flux_table

    wave = C.wavelength_grid()
    _, flux, ivar = read_flux_table(real_data / ANDES / "coadd-lrg-68002-20200315.fits")
    worst = int(np.argmin(flux[:, (wave > 3650) & (wave < 3680)].min(1)))
    col = (wave > 3640) & (wave < 3690) & (flux[worst] < -20)     # the column's two troughs
    assert col.sum() >= 10 and flux[worst, col].min() < -50
    assert (ivar[worst, col] == 0).all()
    _, flux, ivar = read_flux_table(real_data / ANDES / BGS)
    assert ((ivar == 0) & np.isfinite(flux)).sum() == 0


def test_hidden_ivar_of_real_desi_coadds_is_recovered(real_data):
    """The pipeline's own ivar, hidden and re-estimated from the flux: the median sigma ratio
    is near 1 and most pixels are within 30 %."""
    from galclip.data.desi import read_desi_spectra
    from galclip.data.readers import RejectLog

    ratios = []
    for name in ("coadd-4-80613-thru20210324.fits", "coadd-sv3-dark-26065.fits"):
        batch, _ = read_desi_spectra(real_data / "desi" / name, rejects=RejectLog(strict=False),
                                     require_redshift=False)
        for flux, ivar in zip(batch["spectrum_flux"], batch["spectrum_ivar"], strict=True):
            good = ivar > 0
            est = estimate_sigma(flux, good, starts=DESI_SEGMENTS)
            ratios.append(np.median(est[good] * np.sqrt(ivar[good])))
    assert len(ratios) == 3
    assert all(0.85 < r < 1.2 for r in ratios), ratios


def test_a_desi_flux_table_without_ivar_is_read_with_an_estimated_one(real_data):
    path = real_data / ANDES / BGS
    with pytest.raises(QueryFileError, match="holds 5 spectra.*TARGETID 35191325330507548"):
        read_spectrum_fits(path)
    with pytest.warns(IvarEstimatedWarning, match="no inverse variance"):
        spec = read_spectrum_fits(path, targetid=35191325330507548)
    flux, ivar = spec
    assert spec.ivar_estimated and flux.shape == ivar.shape == (C.N_WAVE,)
    assert (ivar > 0).mean() > 0.99 and np.unique(ivar).size > 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IvarEstimatedWarning)
        np.testing.assert_array_equal(read_spectrum_fits(path, row=0)[0], flux)


def test_the_older_tables_wave_column_reads_as_wavelength(tmp_path, real_data):
    """The first versions of the Andes tables name the wavelength column WAVE: the same table
    so named is read to the same spectra by the dataset reader and by the query reader."""
    from astropy.io import fits

    from galclip.data.desi_tables import read_flux_table
    from galclip.data.readers import ReaderError

    src = real_data / ANDES / BGS
    with fits.open(src) as h:
        cols = [fits.Column("WAVE" if c.name == "WAVELENGTH" else c.name, c.format,
                            array=h[1].data[c.name]) for c in h[1].columns]
    old = tmp_path / "coadd-bgs-old.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(old)
    for a, b in zip(read_flux_table(src), read_flux_table(old), strict=True):
        np.testing.assert_array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IvarEstimatedWarning)
        np.testing.assert_array_equal(read_spectrum_fits(old, row=2)[0],
                                      read_spectrum_fits(src, row=2)[0])
    cols[0] = fits.Column("WAVE", "D", array=cols[0].array + 0.3)     # off the 0.8 A grid
    off = tmp_path / "coadd-bgs-off.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(off)
    with pytest.raises(ReaderError, match="column WAVE: wavelengths are not on the"):
        read_flux_table(off)


def test_tables_and_arrays_without_ivar_are_flagged_and_files_with_ivar_are_not(tmp_path,
                                                                                 real_data):
    from astropy.io import fits

    flux, _ = _galaxy(3)
    wave = C.wavelength_grid()
    table = tmp_path / "table.fits"
    fits.BinTableHDU.from_columns([fits.Column("wave", "D", array=wave),
                                   fits.Column("flux", "D", array=flux)]).writeto(table)
    array = tmp_path / "array.fits"
    fits.HDUList([fits.PrimaryHDU(flux.astype(np.float32))]).writeto(array)
    for path in (table, array):
        with pytest.warns(IvarEstimatedWarning):
            spec = read_spectrum_fits(path)
        assert spec.ivar_estimated and spec[1][:500].mean() > 3 * spec[1][-500:].mean()
    with warnings.catch_warnings():
        warnings.simplefilter("error", IvarEstimatedWarning)
        spec = read_spectrum_fits(real_data / "desi" / "coadd-4-80613-thru20210324.fits")
    assert not spec.ivar_estimated


def test_build_dataset_reads_flux_tables_and_marks_the_estimated_ivar(tmp_path, real_data):
    from galclip.data import open_dataset
    from galclip.data.build import BuildConfig, build_dataset
    from galclip.data.desi import read_redshifts

    zbest = real_data / ANDES / "zbest-bgs-66003-20200315.fits"
    cfg = BuildConfig(out=str(tmp_path / "ds"), spectra=[str(real_data / ANDES / BGS)],
                      redshifts=[str(zbest)], keep_unpaired=True, progress=False)
    assert build_dataset(cfg)["report"].ivar_estimated == 5
    cols = open_dataset(tmp_path / "ds").read_columns(["object_id", "redshift", "ra",
                                                       "ivar_estimated"])
    z = read_redshifts(zbest)
    truth = dict(zip(z["TARGETID"].tolist(), z["Z"].tolist(), strict=True))
    assert cols["ivar_estimated"].all() and np.isfinite(cols["ra"]).all()
    np.testing.assert_allclose(cols["redshift"], [truth[i] for i in cols["object_id"]],
                               rtol=1e-6)


def test_a_desi_coadd_stripped_of_its_ivar_is_read_with_an_estimate_close_to_it(tmp_path,
                                                                                real_data):
    """The pipeline format without {ARM}_IVAR HDUs: the query reader and build-dataset both
    estimate the ivar, mark it, and land near the pipeline's own."""
    from astropy.io import fits

    from galclip.data.build import BuildConfig, build_dataset
    from galclip.data.desi import read_desi_spectra

    src = real_data / "desi" / "coadd-4-80613-thru20210324.fits"
    stripped = tmp_path / "coadd-noivar.fits"
    with fits.open(src) as hdul:
        fits.HDUList([h.copy() for h in hdul if not h.name.endswith("_IVAR")]).writeto(stripped)
    _, true_ivar = read_spectrum_fits(src)
    with pytest.warns(IvarEstimatedWarning):
        spec = read_spectrum_fits(stripped)
    good = (true_ivar > 0) & (spec[1] > 0)
    assert spec.ivar_estimated and good.mean() > 0.9
    assert 0.75 < np.median(spec[1][good] / true_ivar[good]) < 1.25
    batch, _ = read_desi_spectra(stripped, [real_data / "desi" / "redrock-4-80613-thru20210324.fits"])
    assert batch["ivar_estimated"].all()
    cfg = BuildConfig(out=str(tmp_path / "ds"), spectra=[str(stripped)], keep_unpaired=True,
                      redshifts=[str(real_data / "desi" / "redrock-4-80613-thru20210324.fits")],
                      progress=False)
    assert build_dataset(cfg)["report"].ivar_estimated == 1


def test_an_unknown_targetid_in_a_flux_table_names_its_columns_not_a_fibermap(real_data):
    path = real_data / ANDES / BGS
    with pytest.raises(QueryFileError, match="TARGETID 5 is not in the flux table's "
                                             r"TARGET<TARGETID> columns; available"):
        read_spectrum_fits(path, targetid=5)


def test_the_estimate_on_the_grid_follows_the_sky_lines_of_desis_noise_model():
    """Noise drawn from DESI's noise model (sky lines included): the running-median estimate
    reads the continuum's noise at the sky lines (too low there); the readers' grid estimate,
    taking its shape from the same model, follows the lines and the continuum."""
    from scipy.ndimage import median_filter

    from galclip.data.noise import WINDOW, model_variance

    rng = np.random.default_rng(5)
    wave = C.wavelength_grid()
    expected = 0.5 + 0.3 * (wave > 4000)                       # a faint continuum
    sigma = np.sqrt(model_variance(expected))
    flux = expected + sigma * rng.standard_normal(wave.size)
    good = np.ones(wave.size, bool)
    v = model_variance(expected)
    shape = v / median_filter(v, WINDOW, mode="nearest")   # sky lines: > 1
    line, cont = shape > 1.5, shape < 1.1
    assert line.sum() > 200 and np.mean(wave[line] > 5500) > 0.9   # mostly the red arms
    plain = estimate_sigma(flux, good, starts=DESI_SEGMENTS) / sigma
    grid = 1.0 / np.sqrt(estimate_grid_ivar(flux, good)) / sigma
    assert np.median(plain[line]) < 0.8                        # the continuum's noise
    assert np.median(grid[line]) == pytest.approx(1.0, abs=0.15)
    assert np.median(grid[cont]) == pytest.approx(1.0, abs=0.06)


def test_the_shipped_noise_model_is_the_simulators():
    """galclip.data ships DESI's noise model so that reading needs no simulator; it must be
    what the simulator's instrument model writes (regenerate with write_noise_model)."""
    pytest.importorskip("desispec")
    pytest.importorskip("specsim")
    from galclip.data.noise import NOISE_MODEL_FILE, model_variance
    from galclip.sim import instrument as I

    wave = C.wavelength_grid()
    flux = 2.0 + np.sin(wave / 500.0)
    for seconds in (180.0, 1000.0, 2500.0):
        sim = I.spectrum_variance(flux, I.Exposure(exptime_s=seconds, sky_factor=1.0))
        np.testing.assert_allclose(model_variance(flux, seconds), sim, rtol=1e-5)
    assert NOISE_MODEL_FILE.stat().st_size < 100_000
