"""Instrument effects of simulated DESI spectra (sim/observing.py): exposure per programme,
sky-subtraction residuals, calibration error, fibre losses, masking; and their calibration
against the real shared DESI files (sim/report_instrument.py). Tests that observe a spectrum
are marked slow: loading the sky spectra takes a second or more once per process."""
from __future__ import annotations

import numpy as np
import pytest

from galclip import conventions as C
from galclip.sim import instrument as I
from galclip.sim import observing as O

pytest.importorskip("desispec", reason="the simulator's sky and DESI tiles come from desispec")


def _observe_many(n, exp, fibre=None, psf=1.0, seed=0):
    rng = np.random.default_rng(seed)
    fibre = np.zeros(C.N_WAVE) if fibre is None else fibre
    return [O.observe(fibre, exp, psf, rng) for _ in range(n)]


def test_exposure_times_follow_desi_tiles_of_each_programme():
    rng = np.random.default_rng(0)
    for programme, cond in O.CONDITIONS.items():
        draws = [O.draw_conditions(rng, programme) for _ in range(600)]
        eff = np.array([e.efftime_s for e, _ in draws])
        tiles = O.tile_conditions(cond)["efftime"]
        assert np.isin(eff, tiles).all()
        assert np.median(eff) == pytest.approx(np.median(tiles), rel=0.05)
        assert eff.min() >= 0.85 * O.GOAL_EFFTIME_S[cond]      # DESI's tile completion rule
        assert all(e.exptime_s == pytest.approx(e.efftime_s * e.sky_factor) for e, _ in draws)
        seeing = np.array([s for _, s in draws])
        assert 0.5 < seeing.min() and 0.9 < np.median(seeing) < 1.4
    bright = [O.draw_conditions(rng, "bgs_bright")[0] for _ in range(300)]
    dark = [O.draw_conditions(rng, "lrg")[0] for _ in range(300)]
    assert np.median([e.efftime_s for e in dark]) > 3 * np.median([e.efftime_s for e in bright])
    assert np.median([e.sky_factor for e in bright]) > 1.5 > np.median([e.sky_factor for e in dark])
    with pytest.raises(ValueError, match="unknown DESI programme 'qso'"):
        O.draw_conditions(rng, "qso")


def test_a_share_of_spectra_is_observed_at_survey_validation_depth():
    """deep_fraction of the galaxies get DEEP_DEPTH times their tile's effective time (the same
    tile, sky and seeing); with 0 the draw is exactly the main-survey one."""
    ratio, same = [], []
    for i in range(1000):
        e0, s0 = O.draw_conditions(np.random.default_rng(i), "lrg")
        e1, s1 = O.draw_conditions(np.random.default_rng(i), "lrg", deep_fraction=0.25)
        ratio.append(e1.efftime_s / e0.efftime_s)
        same.append(s0 == s1 and e1.sky_factor == e0.sky_factor
                    and e1.exptime_s == pytest.approx(e1.efftime_s * e1.sky_factor))
    ratio = np.array(ratio)
    deep = ratio > 1
    assert all(same)
    assert np.mean(deep) == pytest.approx(0.25, abs=0.05)
    assert ratio[deep].min() >= O.DEEP_DEPTH[0] and ratio[deep].max() <= O.DEEP_DEPTH[1]
    assert np.all(ratio[~deep] == 1.0)
    plain, zero = np.random.default_rng(7), np.random.default_rng(7)
    O.draw_conditions(plain, "bgs_bright")
    O.draw_conditions(zero, "bgs_bright", deep_fraction=0.0)
    assert plain.random() == zero.random()       # no extra draw: the population is unchanged


def test_the_deep_fraction_is_checked_and_recorded(tmp_path, capsys):
    from galclip.cli import main
    from galclip.sim.survey import STATE_FILE, SimConfig, _prepare_output

    assert main(["simulate", "--n", "4", "--out", str(tmp_path / "x"), "--deep-fraction", "1.5"]) == 2
    assert "argument --deep-fraction" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    with pytest.raises(ValueError, match="--deep-fraction must be in"):
        SimConfig(n=4, deep_fraction=1.5).validate()
    _prepare_output(tmp_path / "s", SimConfig(n=4, deep_fraction=0.1))
    import json

    state = json.loads((tmp_path / "s" / STATE_FILE).read_text())
    assert state["inputs"]["config"]["deep_fraction"] == 0.1


def _line_pixels():
    wave = C.wavelength_grid()
    lines = O.sky_lines() * I.FIBER_AREA_ARCSEC2
    oi = np.abs(wave - 5578.9) < 1.5                                # [OI] 5577 (vacuum)
    oh = (wave > 7600) & (lines > 30)                               # red-arm OH lines
    quiet = lines < 0.05
    return lines, oi, oh, quiet


@pytest.mark.slow
def test_sky_residuals_scale_with_the_sky_line_flux():
    lines, oi, oh, quiet = _line_pixels()
    assert oi.sum() >= 2 and oh.sum() >= 20
    rng = np.random.default_rng(1)
    rms = {}
    for s in (1.0, 4.0):
        exp = I.Exposure(1000.0, s, 1000.0 / s)
        r = np.array([O.sky_residual(exp, rng, fraction=0.02) for _ in range(100)])
        rms[s] = {k: np.sqrt(np.mean(r[:, m] ** 2)) for k, m in (("oi", oi), ("oh", oh))}
        assert np.abs(r[:, quiet]).max() < 0.02 * 0.05 * s * 6
        frac = np.sqrt(np.mean(r[:, oh] ** 2, axis=0)) / (lines[oh] * s)
        assert np.median(frac) == pytest.approx(0.02, rel=0.1)
    for k in ("oi", "oh"):
        assert rms[4.0][k] / rms[1.0][k] == pytest.approx(4.0, rel=0.15)


@pytest.mark.slow
def test_observed_spectra_carry_sky_residuals_beyond_their_ivar():
    """As in the pipeline, the ivar knows the sky's photon noise but not its subtraction
    error: chi^2 is 1 away from sky lines and above 1 on the bright red-arm OH lines."""
    _, _, oh, quiet = _line_pixels()
    obs = _observe_many(150, I.Exposure(700.0, 3.0, 700.0 / 3.0))
    chi2 = np.array([(o["flux"] - o["expected"]) ** 2 * o["ivar"] for o in obs])
    good = np.array([o["ivar"] > 0 for o in obs])
    assert np.mean(chi2[:, quiet][good[:, quiet]]) == pytest.approx(1.0, abs=0.03)
    assert np.mean(chi2[:, oh][good[:, oh]]) > 1.3


@pytest.mark.slow
def test_calibration_error_is_smooth_and_a_few_per_cent():
    rng = np.random.default_rng(2)
    cal = np.array([O.calibration_error(rng) for _ in range(400)])
    rms = np.sqrt(np.mean((cal - 1) ** 2, axis=1))
    assert np.sqrt(np.mean(rms**2)) == pytest.approx(O.CALIB_RMS, rel=0.15)
    assert np.abs(cal.mean(0) - 1).max() < 0.01                   # unbiased
    assert np.abs(np.diff(cal, 2, axis=1)).max() < 1e-6           # smooth: no pixel-scale term
    assert np.ptp(cal, axis=1).max() > 0.05                       # but it does tilt spectra
    obs = _observe_many(20, I.Exposure(1000.0, 1.0, 1000.0), fibre=np.full(C.N_WAVE, 5.0), psf=0.5)
    for o in obs:
        np.testing.assert_allclose(o["expected"], 5.0 * o["calibration"] / 0.5, rtol=1e-5)
        assert np.ptp(o["calibration"]) > 0.005                   # observed spectra carry it


@pytest.mark.slow
def test_fibre_loss_grows_with_size_and_seeing_and_is_calibrated_as_a_point_source():
    galsim = pytest.importorskip("galsim")
    from galclip.sim.imaging import fiber_fractions, point_source_fiber_fraction

    def frac(r_half, seeing):
        return fiber_fractions({"g": galsim.Exponential(half_light_radius=r_half)}, seeing)["g"]

    by_size = [frac(r, 1.1) for r in (0.3, 1.0, 3.0)]
    by_seeing = [frac(1.0, s) for s in (0.8, 1.2, 1.8)]
    psf = [point_source_fiber_fraction(s) for s in (0.8, 1.2, 1.8)]
    assert by_size[0] > by_size[1] > by_size[2] and by_seeing[0] > by_seeing[1] > by_seeing[2]
    assert 1 > psf[0] > psf[1] > psf[2] > 0 and all(p > f for p, f in zip(psf, by_seeing, strict=True))
    assert 0.5 < point_source_fiber_fraction(1.1) < 0.65          # DESI: ~0.6 at 1.1" seeing
    obs = _observe_many(1, I.Exposure(1000.0, 1.0, 1000.0), fibre=np.full(C.N_WAVE, 5.0), psf=psf[2])
    assert np.median(obs[0]["expected"]) == pytest.approx(5.0 / psf[2], rel=0.1)


@pytest.mark.slow
def test_masked_pixels_have_ivar_and_flux_zero_in_short_runs():
    obs = _observe_many(200, I.Exposure(1000.0, 1.0, 1000.0), fibre=np.full(C.N_WAVE, 5.0))
    runs = []
    for o in obs:
        bad = o["ivar"] == 0
        assert (o["flux"][bad] == 0).all() and (o["ivar"][~bad] > 0).all()
        edges = np.diff(np.concatenate([[0], bad.astype(int), [0]]))
        runs.append(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    lengths = np.concatenate(runs)
    assert lengths.min() >= O.MASK_RUN_LENGTH[0] and lengths.max() <= 2 * O.MASK_RUN_LENGTH[1]
    assert np.mean([len(r) for r in runs]) == pytest.approx(3 * O.MASK_RUNS_PER_ARM, rel=0.15)


@pytest.mark.slow
def test_calibration_against_the_real_coadds(real_data):
    """Noise per unit effective time and the sky-line residual of spectra observed by the model
    in dark conditions are those measured on the real pipeline coadds' target fibres."""
    from galclip.sim import report_instrument as R

    real = R.real_coadd_targets(real_data)
    assert len(real["name"]) >= 4
    rng = np.random.default_rng(3)
    sims = []
    for _ in range(40):
        exp, seeing = O.draw_conditions(rng, "lrg")
        psf = 0.75
        sims.append((O.observe(np.zeros(C.N_WAVE), exp, psf, rng), exp, psf))
    ivar = np.array([o["ivar"] for o, _, _ in sims])
    eff = np.array([e.efftime_s for _, e, _ in sims])
    psf = np.array([p for _, _, p in sims])
    ratio = R.noise_vs_sky(ivar, eff, psf) / R.noise_vs_sky(real["ivar"], real["efftime"], real["psf"])
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
    assert 0.8 < np.median(ratio) < 1.25, ratio
    lines = O.sky_lines() * I.FIBER_AREA_ARCSEC2
    sim_f = R.sky_residual_fraction(np.array([o["flux"] for o, _, _ in sims]), ivar,
                                    np.array([e.sky_factor / p * lines for _, e, p in sims]))
    real_f = R.sky_residual_fraction(real["flux"], real["ivar"], (1 / real["psf"])[:, None] * lines)
    assert real_f.max() < np.percentile(sim_f, 95) and np.median(real_f) < np.median(sim_f) * 2
    assert np.median(sim_f) < 3 * max(np.median(real_f), 0.003)


@pytest.mark.slow
def test_point_source_calibration_turns_extended_galaxies_blue():
    """The seeing is worse in the blue (FWHM ~ wavelength^-1/5), so a point source loses more
    blue light than an extended galaxy, and the point-source calibration over-corrects the
    galaxy's blue end; a point source itself comes out flat."""
    galsim = pytest.importorskip("galsim")
    from galclip.sim.imaging import fiber_fractions, point_source_fiber_fraction

    seeing = 1.2
    blue = O.seeing_at(seeing, O.BLUE_WAVE)
    assert blue > seeing > O.seeing_at(seeing, 9000.0)
    gal = galsim.Exponential(half_light_radius=1.0)
    g = O.fraction_curve(fiber_fractions({"g": gal}, seeing)["g"], fiber_fractions({"g": gal}, blue)["g"])
    p = O.fraction_curve(point_source_fiber_fraction(seeing), point_source_fiber_fraction(blue))
    wave = C.wavelength_grid()
    at = {w: int(np.argmin(np.abs(wave - w))) for w in (O.BLUE_WAVE, O.SEEING_WAVE, 9000.0)}
    assert p[at[O.SEEING_WAVE]] == pytest.approx(point_source_fiber_fraction(seeing), abs=1e-3)
    assert p[at[O.BLUE_WAVE]] < p[at[O.SEEING_WAVE]] < p[at[9000.0]]
    tilt = g / p                                          # calibrated / true galaxy spectrum
    assert tilt[at[O.BLUE_WAVE]] > 1.03 * tilt[at[9000.0]]
