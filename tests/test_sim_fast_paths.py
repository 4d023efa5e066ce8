"""The simulator's shortcuts against the exact computation they stand in for.

Each fast path (a bound that rejects draws early, a cached per-redshift term) must leave every
accepted galaxy and every number written the same: these tests run the fast and the exact path
side by side and fail on any difference.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("bagpipes", reason="the simulator needs the 'sim' extra")
pytestmark = pytest.mark.slow    # builds the bagpipes models of every programme
warnings.filterwarnings("ignore")


@pytest.fixture(scope="module")
def sim():
    from galclip.sim.survey import GalaxySimulator, SimConfig

    return GalaxySimulator(SimConfig(n=1, seed=0, programmes="bgs,lrg,elg"))


def _proposals(sim, rng, n):
    """Galaxies drawn as the sampler draws them (each programme's proposal, before any cut)."""
    from galclip.sim.population import draw_galaxy

    for i in range(n):
        floor, redshifts = sim._plan[sim.programmes[i % len(sim.programmes)].name]
        yield draw_galaxy(rng, lambda z, f=floor: float(np.interp(z, *f)), redshifts)


def test_fibre_fraction_bound_is_above_galsims_fraction_even_without_its_margin(sim):
    from galclip.sim.fibrebound import MARGIN
    from galclip.sim.imaging import legacy_fibre_fractions

    ratios = []
    for g in _proposals(sim, np.random.default_rng(21), 120):
        exact, bound = legacy_fibre_fractions(g), sim._fibre_bound.fractions(g)
        for c in ("bulge", "disc"):
            assert bound[c] >= exact[c]
            ratios.append(bound[c] / MARGIN / exact[c])
    assert min(ratios) >= 1.0 - 1e-9   # the tables alone hold; the margin is spare
    assert np.median(ratios) < 1.05    # and they are tight enough to reject draws


class _NoFibreBound:
    """The sampler as it was without the fibre-fraction bound: every fraction may be 1."""

    @staticmethod
    def fractions(g):
        return {"bulge": 1.0, "disc": 1.0}


def _targets(sim, seeds):
    out = []
    for s in seeds:
        t = sim.draw_target(np.random.default_rng([7, s]))
        out.append((t.programme, t.galaxy.redshift, t.galaxy.logm_target, t.phot, t.ls_fibre,
                    t.desi_target, t.bgs_target))
    return out


def test_fibre_bound_rejects_draws_but_changes_no_accepted_galaxy(sim, monkeypatch):
    from galclip.sim import imaging

    calls = {"galsim": 0}
    exact = imaging.legacy_fibre_fractions

    def counted(g):
        calls["galsim"] += 1
        return exact(g)

    monkeypatch.setattr(imaging, "legacy_fibre_fractions", counted)
    seeds = range(14)
    fast = _targets(sim, seeds)
    fast_calls, calls["galsim"] = calls["galsim"], 0
    monkeypatch.setattr(sim, "_fibre_bound", _NoFibreBound())
    slow = _targets(sim, seeds)
    assert {t[0] for t in slow} >= {"lrg", "bgs_faint"}
    assert fast == slow
    assert fast_calls < calls["galsim"]   # draws doomed by the fibre cuts never reach GalSim


def test_redshifted_filters_give_bagpipes_photometry_the_same_bits(sim):
    """The engine's models share the blueshifted filter curves of the last redshift
    (sed.RedshiftedFilters): photometry must equal bagpipes' own get_photometry, bit for bit,
    whichever model asks and in whatever order of redshifts."""
    models = sim.engine._models
    for spectral in (False, True):
        plain, nebular = models[(False, spectral)], models[(True, spectral)]
        assert plain.filter_set.get_photometry.__self__ is nebular.filter_set.get_photometry.__self__
    rng = np.random.default_rng(3)
    for z in (0.31, 0.31, 1.05, 0.31, 0.02, 0.02):
        for model in models.values():
            fs = model.filter_set
            spectrum = rng.lognormal(size=len(fs.wavelengths))
            ref = type(fs).get_photometry(fs, spectrum, z, unit_conv="cgs_to_mujy")
            assert np.array_equal(fs.get_photometry(spectrum, z, unit_conv="cgs_to_mujy"), ref)


def _bagpipes_grid(grid):
    """bagpipes' own C-ordered [wavelength, ..., age] array behind an engine's grid."""
    from galclip.sim.sed import AgeSums

    if isinstance(grid, AgeSums):
        return np.ascontiguousarray(np.moveaxis(grid.per_age, -1, 0))
    assert isinstance(grid, np.ndarray) and grid.flags.c_contiguous
    return grid


def test_age_sums_give_bagpipes_stellar_and_nebular_spectra_the_same_bits(sim):
    """sed.StellarSums and NebularSums sum bagpipes' grids over ages in numpy's pairwise order
    from age-major copies: the spectra must equal bagpipes' own, bit for bit, for random SFH
    weights on every model's grids, and the weighted sum must equal np.sum's for any range."""
    from bagpipes.models.nebular_model import nebular
    from bagpipes.models.stellar_model import stellar

    from galclip.sim.sed import weighted_age_sum

    rng = np.random.default_rng(5)
    for model in sim.engine._models.values():
        assert model.stellar.spectrum.__func__.__qualname__ == "StellarSums.spectrum"
        ref = stellar.__new__(stellar)
        ref.wavelengths, ref.grid = model.stellar.wavelengths, _bagpipes_grid(model.stellar.grid)
        for t_bc in (0.01, 0.003, 0.3):
            weights = rng.lognormal(size=ref.grid.shape[1:]) * (rng.random(ref.grid.shape[1:]) < 0.6)
            got = model.stellar.spectrum(weights.copy(), t_bc)
            want = stellar.spectrum(ref, weights.copy(), t_bc)
            for a, b in zip(got, want, strict=True):
                assert np.array_equal(a, b)
        if not model.nebular:
            continue
        assert model.nebular.spectrum.__func__.__qualname__ == "NebularSums.spectrum"
        ref = nebular.__new__(nebular)
        ref.wavelengths = model.nebular.wavelengths
        ref.combined_grid = _bagpipes_grid(model.nebular.combined_grid)
        for t_bc, logu in ((0.01, -3.1), (0.01, -4.0), (0.003, -2.45), (0.01, -0.2)):
            weights = rng.lognormal(size=(ref.combined_grid.shape[1], 42))   # (metallicity, age)
            got = model.nebular.spectrum(weights.copy(), t_bc, logu)
            want = nebular.spectrum(ref, weights.copy(), t_bc, logu)
            assert np.array_equal(got, want)
    per_age = rng.normal(size=(300, 50))
    grid, w = np.ascontiguousarray(per_age.T), rng.normal(size=300)   # (wavelength, age)
    for lo, hi in ((0, 1), (0, 7), (3, 11), (0, 128), (5, 133), (0, 300), (17, 290)):
        assert np.array_equal(weighted_age_sum(per_age, w, lo, hi),
                              np.sum(grid[:, lo:hi] * w[lo:hi], axis=1))


def test_population_draws_are_those_of_numpys_clip_and_bagpipes_style_ssfr(monkeypatch):
    """population._clip stands in for float(np.clip(...)) and delayed_ssfr evaluates exp(-x)
    once: the galaxies drawn must be those drawn with numpy's clip and the two-exp formula."""
    from dataclasses import asdict

    from galclip.sim import population as P

    def draws():
        rng = np.random.default_rng(17)
        return [asdict(P.draw_galaxy(rng, lambda z: 8.5 + 3 * z)) for _ in range(300)]

    fast = draws()
    monkeypatch.setattr(P, "_clip", lambda x, lo, hi: float(np.clip(x, lo, hi)))
    monkeypatch.setattr(P, "delayed_ssfr", lambda age, tau: float(
        age / tau * np.exp(-age / tau) / (tau * (1.0 - np.exp(-age / tau) * (1.0 + age / tau)))))
    assert fast == draws()


def _observed_spectrum_uncached(rest_wave, flux, z, veldisp, max_redshift):
    """sed.observed_spectrum as it was before its wavelength terms were kept between calls."""
    from galclip import conventions as C
    from galclip.sim.sed import air_to_vacuum

    dv = np.diff(np.log(rest_wave)) * 299792.458
    inside = ((rest_wave > C.WAVE_MIN / (1 + max_redshift) / 1.01)
              & (rest_wave < C.WAVE_MIN + C.WAVE_STEP * C.N_WAVE))
    sig = max(veldisp / float(np.median(dv[inside[1:]])), 1e-3)
    half = int(np.ceil(5 * sig))
    kern = np.exp(-0.5 * (np.arange(-half, half + 1) / sig) ** 2)
    smooth = np.convolve(flux, kern / kern.sum(), mode="same")
    obs_wave = air_to_vacuum(rest_wave) * (1 + z)
    edges = np.concatenate([C.wavelength_grid() - C.WAVE_STEP / 2,
                            [C.WAVE_MIN + C.WAVE_STEP * (C.N_WAVE - 0.5)]])
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (smooth[1:] + smooth[:-1]) * np.diff(obs_wave))])
    mids = np.concatenate([[obs_wave[0]], 0.5 * (obs_wave[1:] + obs_wave[:-1])])
    integral = np.interp(edges, np.concatenate([mids, [obs_wave[-1]]]), np.concatenate([[0.0], cum]))
    return np.diff(integral) / C.WAVE_STEP / C.FLUX_UNIT_CGS


def test_observed_spectrum_and_igm_kept_between_calls_give_the_same_bits(sim):
    """observed_spectrum keeps its wavelength terms for the last array and redshift, and the
    models share the IGM transmission of the last redshift: the results must be those computed
    afresh, whichever array, redshift and model come in whatever order."""
    from galclip.sim.sed import observed_spectrum

    rng = np.random.default_rng(8)
    waves = [sim.engine._models[(False, True)].wavelengths,
             np.array(sim.engine._models[(False, True)].wavelengths[::2])]
    for z, veldisp, k, max_z in ((0.3, 150.0, 0, 0.7), (0.3, 60.0, 0, 0.7), (0.3, 60.0, 1, 0.7),
                                 (0.3, 60.0, 1, 1.3), (0.9, 220.0, 0, 1.3), (0.3, 90.0, 0, 1.3)):
        flux = rng.lognormal(size=len(waves[k]))
        assert np.array_equal(observed_spectrum(waves[k], flux, z, veldisp, max_z),
                              _observed_spectrum_uncached(waves[k], flux, z, veldisp, max_z))
    models = sim.engine._models
    for spectral in (False, True):   # plain and nebular models of one kind share it
        assert models[(False, spectral)].igm.trans is models[(True, spectral)].igm.trans
    for z in (0.4, 0.4, 1.3, 0.05, 0.4):
        for m in models.values():
            assert np.array_equal(m.igm.trans(z), type(m.igm).trans(m.igm, z))


def test_delayed_weights_are_bagpipes_ssp_weights_to_the_bit():
    """fluxbound.delayed_weights gives the flux bounds a delayed-tau component's SSP weights
    without bagpipes' update bookkeeping: they must be bagpipes' own, bit for bit."""
    from bagpipes.models.star_formation_history import star_formation_history

    from galclip.sim.fluxbound import delayed_weights
    from galclip.sim.population import age_of_universe
    from galclip.sim.sfh import fast_history

    rng = np.random.default_rng(9)

    def component():
        z = float(rng.uniform(0.01, 1.6))
        return {"redshift": z, "t_bc": 0.01, "dust": {"type": "Calzetti", "Av": 0.3, "eta": 2.0},
                "delayed": {"age": float(rng.uniform(0.05, age_of_universe(z) - 0.01)),
                            "tau": float(np.exp(rng.uniform(np.log(0.05), np.log(100.0)))),
                            "massformed": float(rng.uniform(6, 12)),
                            "metallicity": float(rng.choice([rng.uniform(0.001, 2.6), 0.0001, 5.0]))}}

    first = component()
    history = fast_history(star_formation_history(first), derived=False)
    for _ in range(60):
        c = component()
        reference = star_formation_history(c)
        assert np.array_equal(delayed_weights(history, c), reference.ceh.grid)
