"""The simulated catalogue photometry: measured fluxes with the noise of a model fit.

The fast tests check the flux-ivar estimator on a known profile; the slow ones (one simulator,
shared with nothing else) check the rows: pulls ~ N(0, 1), the ivar against refits of the
row's own cutout, faint galaxies noisier, and that the photometry noise touches no other column.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from galclip import conventions as C
from galclip.sim.imaging import model_flux_ivar


def _gaussian(n: int, sigma_px: float) -> np.ndarray:
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    p = np.exp(-(x**2 + y**2) / (2 * sigma_px**2))
    return p / p.sum()


def _refit_sigma(model: np.ndarray, ivar: np.ndarray, total: float, n: int, seed: int) -> float:
    """Std of the weighted least-squares flux over ``n`` noise realisations of one band."""
    rng = np.random.default_rng(seed)
    p = model / total
    data = model + rng.normal(size=(n, *model.shape)) / np.sqrt(ivar)
    fits = np.sum(p * data * ivar, axis=(1, 2)) / np.sum(p**2 * ivar)
    return float(np.std(fits))


def test_flux_ivar_of_a_gaussian_on_flat_noise_is_the_analytic_bound():
    # sum P^2 of a unit-flux Gaussian of width s px is 1/(4 pi s^2): ivar = 4 pi s^2 / sigma^2
    s, sky = 3.0, 0.02
    model = 50.0 * _gaussian(61, s)[None].repeat(3, 0)
    ivar = np.full(model.shape, sky**-2)
    got = model_flux_ivar(model, np.full(3, 50.0), ivar)
    np.testing.assert_allclose(got, 1.0 / (4 * np.pi * s**2 * sky**2), rtol=1e-3)


def test_central_stamp_and_refused_shapes():
    from galclip.sim.imaging import central

    a = np.arange(2 * 6 * 6).reshape(2, 6, 6)
    np.testing.assert_array_equal(central(a, 2), a[:, 2:4, 2:4])
    with pytest.raises(ValueError, match="cannot centre a 3 px stamp on a 6 x 6 image"):
        central(a, 3)


def test_flux_ivar_is_the_variance_of_a_fit_and_counts_light_off_the_stamp():
    model = 10.0 * _gaussian(41, 2.5)[None]
    ivar = 1.0 / (0.01**2 + model / 3000.0)   # sky plus source noise, as the cutouts have
    sigma = model_flux_ivar(model, np.array([10.0]), ivar)[0] ** -0.5
    assert _refit_sigma(model[0], ivar[0], 10.0, 4000, 0) == pytest.approx(sigma, rel=0.05)
    # half the light off the stamp: the profile is fainter per pixel, the flux less certain
    half = model_flux_ivar(model, np.array([20.0]), ivar)[0] ** -0.5
    assert half == pytest.approx(2 * sigma, rel=1e-9)


# ----------------------------------------------------------------------------- simulated rows
@pytest.fixture(scope="module")
def sim():
    pytest.importorskip("bagpipes", reason="the simulator needs the 'sim' extra")
    warnings.filterwarnings("ignore")
    from galclip.sim.survey import GalaxySimulator, SimConfig

    return GalaxySimulator(SimConfig(n=1, seed=11, programmes="bgs_bright,bgs_faint,lrg"))


@pytest.fixture(scope="module")
def rows(sim):
    return [sim.simulate(i, keep_truth_arrays=True) for i in range(12)]


def _pulls(rows) -> np.ndarray:
    return np.array([(r[f"flux_{b}"] - r[f"flux_{b}_true"]) * np.sqrt(r[f"flux_ivar_{b}"])
                     for r in rows for b in C.BANDS])


@pytest.mark.slow   # builds the bagpipes models and simulates 12 galaxies
def test_measured_fluxes_scatter_around_the_truth_by_their_ivar(sim, rows):
    pulls = _pulls(rows)                                  # 36 pulls of the rows themselves
    assert np.all(pulls != 0) and np.all(np.abs(pulls) < 5)
    # many draws of the rows' own photometry generators (other row indices, same cutout)
    r = rows[0]
    sb = {"phot": {b: r[f"flux_{b}_true"] for b in C.BANDS}}
    sd = {"phot": dict.fromkeys(C.BANDS, 0.0)}
    draws = [sim._catalogue_photometry(i, r["_galaxy_model"], r["_image_ivar"], sb, sd)
             for i in range(3000)]
    many = np.array([[(d[f"flux_{b}"] - r[f"flux_{b}_true"]) * np.sqrt(d[f"flux_ivar_{b}"])
                      for b in C.BANDS] for d in draws])
    assert np.abs(many.mean(0)).max() < 0.08 and np.abs(many.std(0) - 1).max() < 0.05
    assert abs(np.corrcoef(many.T)[0, 1]) < 0.08          # bands drawn independently


@pytest.mark.slow
def test_flux_ivar_matches_refits_of_the_rows_own_cutout(rows):
    from galclip.sim.imaging import central

    for r in rows[:4]:
        total = np.array([r[f"flux_{b}_true"] for b in C.BANDS])
        model = r["_galaxy_model"]
        ivar = central(r["_image_ivar"], model.shape[-1])
        for k, b in enumerate(C.BANDS):
            sigma = r[f"flux_ivar_{b}"] ** -0.5
            assert _refit_sigma(model[k], ivar[k], total[k], 400, k) == pytest.approx(sigma, rel=0.15)
        # the model holds (nearly) all of the galaxy's light, and none of its neighbours'
        assert model.sum((1, 2)) == pytest.approx(total, rel=0.03)
        assert np.all(model <= central(r["_noiseless_image"], model.shape[-1]) + 1e-4)


@pytest.mark.slow
def test_fainter_galaxies_have_larger_relative_errors(rows):
    from scipy.stats import spearmanr

    mag = np.array([r["mag_r"] for r in rows])
    rel = np.array([r["flux_ivar_r"] ** -0.5 / r["flux_r_true"] for r in rows])
    assert spearmanr(mag, rel).statistic > 0.6
    assert np.all(rel < 0.2)     # r < 20.2 galaxies at DR9 depth are measured to better than 20 %


@pytest.mark.slow
def test_photometry_noise_has_its_own_stream_and_leaves_every_other_column(sim, rows, monkeypatch):
    from galclip.sim import survey

    monkeypatch.setattr(survey, "PHOTOMETRY_STREAM", survey.PHOTOMETRY_STREAM + 1)
    for i in (0, 1):
        again = sim.simulate(i, keep_truth_arrays=True)
        for k, v in rows[i].items():
            if k in {f"flux_{b}" for b in C.BANDS}:
                assert again[k] != v, k
            elif isinstance(v, dict):
                assert again[k] == v, k
            else:
                np.testing.assert_array_equal(again[k], v, err_msg=k)
