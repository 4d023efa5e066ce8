"""The survey simulator: physics checks, noise model, determinism, resume and bad arguments.

One simulator (bagpipes models take seconds to build) is shared by the whole module.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from galclip import conventions as C

pytest.importorskip("bagpipes", reason="the simulator needs the 'sim' extra")
pytestmark = pytest.mark.slow    # the shared simulator and its 16 galaxies take seconds to build
warnings.filterwarnings("ignore")
SEED = 3
BGS = "bgs_bright"   # these tests check the BGS Bright survey's physics (test_targeting: the rest)


@pytest.fixture(scope="module")
def sim():
    from galclip.sim.survey import GalaxySimulator, SimConfig

    return GalaxySimulator(SimConfig(n=1, seed=SEED, programmes=BGS))


@pytest.fixture(scope="module")
def rows(sim):
    return [sim.simulate(i, keep_truth_arrays=True) for i in range(16)]


def test_rows_follow_the_dataset_conventions(rows):
    for r in rows:
        assert r["image"].shape == C.IMAGE_SHAPE and r["image"].dtype == np.float32
        assert r["spectrum_flux"].shape == (C.N_WAVE,) and r["spectrum_ivar"].dtype == np.float32
        assert np.isfinite(r["image"]).all() and np.isfinite(r["spectrum_flux"]).all()
        assert (r["spectrum_ivar"] >= 0).all()
        assert 0.01 <= r["redshift"] <= 0.6 and 14 < r["mag_r"] < 19.5
        assert 7 < r["log_mstar"] < 12.5 and -1.7 < r["logz_mw"] < 0.5
        assert 0 < r["tage_mw"] < 13.8 and r["log_ssfr"] < -8
        assert abs(r["log_ssfr"] - (r["log_sfr"] - r["log_mstar"])) < 1e-9
        assert 0 < r["fiber_flux_r"] < r["flux_r_true"]
    morph = {k for k in rows[0] if k.startswith("morph_")}
    assert {"morph_featured", "morph_edge_on", "morph_spiral_arms", "morph_bar",
            "morph_bulge_size", "morph_merging"} <= morph


def test_quenched_galaxies_are_redder_and_older(rows, sim):
    rng = np.random.default_rng(0)
    draws = [sim.draw_accepted(rng) for _ in range(40)]
    gr = {True: [], False: []}
    for g in draws:
        pb, pd = sim.engine.photometry(g.bulge, g.redshift), sim.engine.photometry(g.disc, g.redshift)
        gr[g.quenched].append(C.nanomaggy_to_mag(pb["g"] + pd["g"]) - C.nanomaggy_to_mag(pb["r"] + pd["r"]))
    assert np.median(gr[True]) > np.median(gr[False]) + 0.2


def test_noise_matches_ivar(rows):
    """(flux - noiseless) * sqrt(ivar) is unit Gaussian, for spectra and for images. A spectrum's
    sky-subtraction residual is not in its ivar (as in the DESI pipeline): it is taken out here."""
    zs, zi = [], []
    for r in rows:
        good = r["spectrum_ivar"] > 0
        resid = r["spectrum_flux"] - r["_noiseless_spectrum"] - r["_sky_residual"]
        zs.append((resid * np.sqrt(r["spectrum_ivar"]))[good])
        zi.append(((r["image"] - r["_noiseless_image"]) * np.sqrt(r["_image_ivar"])).ravel())
    for z in (np.concatenate(zs), np.concatenate(zi)):
        assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


def test_some_pixels_are_masked_but_few(rows):
    frac = np.mean([np.mean(r["spectrum_ivar"] == 0) for r in rows])
    assert 0.0005 < frac < 0.01


def test_emission_lines_sit_at_redshifted_vacuum_wavelengths(rows):
    from scipy.ndimage import median_filter

    from galclip.sim.sed import LINE_WAVELENGTHS_VAC

    wave = C.wavelength_grid()
    checked = 0
    for r in rows:
        for line in ("halpha", "oiii_5007", "hbeta"):
            expect = (1 + r["redshift"]) * LINE_WAVELENGTHS_VAC[line]
            if r[f"line_{line}"] <= 0 or not 3700 < expect < 9750:
                continue
            spec = r["_noiseless_spectrum"]
            resid = spec - median_filter(spec, 101)
            win = np.abs(wave - expect) < 15
            if resid[win].max() < 5 * np.std(resid[~win]):
                continue  # line too weak to locate in the noiseless spectrum
            assert abs(wave[win][np.argmax(resid[win])] - expect) <= 1.2 * C.WAVE_STEP
            checked += 1
    assert checked >= 5


def test_star_forming_galaxies_fall_on_the_bpt_star_forming_locus(sim):
    from galclip.sim.population import draw_galaxy
    from galclip.sim.report import bpt_star_forming

    rng = np.random.default_rng(1)
    ratios = []
    while len(ratios) < 40:
        g = draw_galaxy(rng, lambda z: 9.0)
        if g.quenched or g.disc.logu is None:
            continue
        lines = sim.engine.synthesize(g.disc, g.redshift)["lines"]
        ratios.append([lines[k] for k in ("nii_6584", "halpha", "oiii_5007", "hbeta")])
    nii, ha, oiii, hb = np.array(ratios).T
    assert np.mean(bpt_star_forming(nii, ha, oiii, hb)) >= 0.9


def test_image_photometry_matches_catalog_fluxes(rows):
    checked = 0
    for r in rows:
        if max(r["r_half_disc_arcsec"], r["r_half_bulge_arcsec"]) > 3.0:
            continue  # light beyond the 40" stamp
        for k, b in enumerate(C.BANDS):
            true = r[f"flux_{b}_true"]
            expect = true + r["_contaminant_flux"][k] + r["_companion_flux"][k]
            sigma = np.sqrt(np.sum(1.0 / r["_image_ivar"][k]))
            assert abs(r["image"][k].sum() - expect) < 5 * sigma + 0.03 * true
            checked += 1
    assert checked >= 15


def test_spectrum_synthetic_r_flux_matches_fibre_flux(rows):
    import astropy.units as u
    import speclite.filters

    filt = speclite.filters.load_filters("decam2014-r")
    unit = 1e-17 * u.erg / (u.s * u.cm**2 * u.AA)
    for r in rows:
        if r["morph_merging"]:
            continue  # the fibre also sees the companion
        spec, wave = filt.pad_spectrum(r["_fibre_spectrum"] * unit, C.wavelength_grid() * u.AA,
                                       method="zero")
        maggies = filt.get_ab_maggies(spec, wave)
        assert maggies["decam2014-r"][0] * 1e9 == pytest.approx(r["fiber_flux_r"], rel=0.02)


def test_flux_bounds_are_upper_bounds_and_the_tight_one_is_tight(sim):
    """The rejection sampler skips the exact photometry of draws whose bound is below the
    limit: a bound below the exact flux would change which galaxies are accepted."""
    from galclip.sim.population import draw_galaxy

    rng = np.random.default_rng(11)
    ratios = []
    for _ in range(60):
        g = draw_galaxy(rng, sim.logm_min)
        exact = {id(p): sim.engine.photometry(p, g.redshift)["r"] for p in (g.bulge, g.disc)}
        tight = {id(p): sim.engine.r_flux_upper_bound(p, g.redshift) for p in (g.bulge, g.disc)}
        ratios += [tight[k] / exact[k] for k in exact]
        assert sim.flux_upper_bound(g) >= sum(exact.values())
        assert sim.tight_flux_bound(g) == sum(tight.values())
    ratios = np.array(ratios)
    assert ratios.min() >= 1.0
    assert np.median(ratios) < 1.05   # exact stellar light: only nebular and birth-cloud terms


def test_one_band_bound_serves_both_components_with_the_same_numbers(sim):
    """The engine keeps one flux bound per band, built on the nebular photometric model, for
    the bulge (no nebular emission) too: both models hold the same wavelengths, SSP grid, filters
    and dust, so the bounds are those a bound on each component's own model gives."""
    from galclip.sim.fluxbound import BandFluxBound
    from galclip.sim.population import draw_galaxy
    from galclip.sim.sed import PHOT_NAMES, UJY_PER_NANOMAGGY

    eng = sim.engine
    plain, nebular = eng._models[(False, False)], eng._models[(True, False)]
    assert np.array_equal(plain.wavelengths, nebular.wavelengths)
    assert np.array_equal(plain.stellar.grid, nebular.stellar.grid)
    assert np.array_equal(plain.filter_set.filt_array, nebular.filter_set.filt_array)
    assert np.array_equal(plain.dust_atten.A_cont, nebular.dust_atten.A_cont)
    rng = np.random.default_rng(13)
    for _ in range(6):
        g = draw_galaxy(rng, lambda z: 9.0)
        for pop in (g.bulge, g.disc):
            comp = eng._components(pop, g.redshift, spectral=False)
            own = eng._models[("nebular" in comp, False)]
            for band in ("r", "w1"):
                ref = BandFluxBound(own, PHOT_NAMES.index(band), comp).bounds(comp)
                got = eng.flux_bounds(pop, g.redshift, band)
                assert got == (ref[0] / UJY_PER_NANOMAGGY, ref[1] / UJY_PER_NANOMAGGY)


def test_fast_history_gives_bagpipes_the_same_bits():
    """sfh.py's update does bagpipes' arithmetic with the histogram positions precomputed: every
    array and derived number it leaves must equal bagpipes' own, bit for bit."""
    from bagpipes.models.star_formation_history import star_formation_history

    from galclip.sim.population import age_of_universe
    from galclip.sim.sfh import fast_history

    def comp(rng):
        z = float(rng.uniform(0.01, 1.6))
        return {"redshift": z, "t_bc": 0.01,
                "delayed": {"age": float(rng.uniform(0.02, age_of_universe(z) - 0.01)),
                            "tau": float(np.exp(rng.uniform(np.log(0.05), np.log(100.0)))),
                            "massformed": float(rng.uniform(6, 12)),
                            "metallicity": float(rng.uniform(0.001, 2.6))}}

    rng = np.random.default_rng(4)
    first = comp(rng)
    slow = star_formation_history(first)
    fast = fast_history(star_formation_history(first))
    weights_only = fast_history(star_formation_history(first), derived=False)
    for _ in range(40):
        c = comp(rng)
        for h in (slow, fast, weights_only):
            h.update(c)
        assert np.array_equal(fast.ceh.grid, slow.ceh.grid)
        assert np.array_equal(weights_only.ceh.grid, slow.ceh.grid)
        assert np.array_equal(fast.sfh, slow.sfh) and fast.unphysical == slow.unphysical
        for k in ("stellar_mass", "formed_mass", "sfr", "mass_weighted_age",
                  "mass_weighted_zmet", "tquench"):
            assert getattr(fast, k) == getattr(slow, k), k
    assert type(fast_history(fast)) is type(fast)   # idempotent


def test_wavelength_outer_grid_gives_bagpipes_the_same_bits():
    from galclip.sim.sed import WavelengthOuter

    rng = np.random.default_rng(0)
    for shape in ((500, 7, 42), (500, 7, 9, 15)):
        grid = rng.lognormal(size=shape)
        fast, w = WavelengthOuter(grid), rng.random(shape[-1])
        mid = (3,) if len(shape) == 3 else (3, 5)
        for ages in (slice(None, 11), slice(10, None)):
            key = (slice(None), *mid, ages)
            assert np.array_equal(np.sum(fast[key] * w[ages], axis=1),
                                  np.sum(grid[key] * w[ages], axis=1))
        assert np.array_equal(fast[(slice(None),) + (0,) * (len(shape) - 1)],
                              grid[(slice(None),) + (0,) * (len(shape) - 1)])
        with pytest.raises(IndexError):
            fast[0, 1, 2]


def test_population_looks_like_a_bright_galaxy_survey(sim):
    from galclip.sim.report import number_count_slope

    rng = np.random.default_rng(2)
    gals = [sim.draw_accepted(rng) for _ in range(150)]
    mags = []
    for g in gals:
        pb, pd = sim.engine.photometry(g.bulge, g.redshift), sim.engine.photometry(g.disc, g.redshift)
        mags.append(C.nanomaggy_to_mag(pb["r"] + pd["r"]))
    z = np.array([g.redshift for g in gals])
    assert 0.12 < np.median(z) < 0.3
    assert 0.3 < number_count_slope(np.array(mags), 16.0, 19.5) < 0.75


def test_noise_level_matches_real_desi_coadds(real_data):
    from galclip.sim.report import desi_ivar_comparison

    for arm, v in desi_ivar_comparison(real_data).items():
        assert 0.7 < v["sim"] / v["real"] < 1.4, (arm, v)


def test_rows_do_not_depend_on_workers_and_resume_is_identical(sim, rows, tmp_path):
    from galclip.data import open_dataset
    from galclip.sim import survey
    from galclip.sim.survey import SimConfig, simulate_survey

    survey._WORKER = sim  # in-process runs reuse the module's simulator
    cfg = SimConfig(n=5, seed=SEED, shard_size=2, programmes=BGS)
    m1 = simulate_survey(tmp_path / "a", cfg, workers=1, progress=False)
    ds = open_dataset(tmp_path / "a")
    for i in range(5):
        np.testing.assert_array_equal(ds[i]["image"], rows[i]["image"])
        np.testing.assert_array_equal(ds[i]["spectrum_flux"], rows[i]["spectrum_flux"])
    # ids depend on (seed, row) only and differ between seeds: seed 3 numbers from 3e9
    np.testing.assert_array_equal(ds.read_columns(["object_id"])["object_id"],
                                  SEED * survey.ID_STRIDE + np.arange(5))
    # a run killed after its first shards: manifest and last shard missing
    (tmp_path / "a" / "manifest.json").unlink()
    (tmp_path / "a" / "part-00002.parquet").unlink()
    m2 = simulate_survey(tmp_path / "a", cfg, workers=1, progress=False)
    assert [s["sha256"] for s in m2["shards"]] == [s["sha256"] for s in m1["shards"]]


def test_reference_rows_follow_the_survey_and_are_never_a_training_or_evaluation_split(
        sim, rows, tmp_path):
    from galclip.data import open_dataset
    from galclip.data.splits import assign_splits, split_indices
    from galclip.sim import survey
    from galclip.sim.survey import SimConfig, simulate_survey

    survey._WORKER = sim
    m = simulate_survey(tmp_path / "r", SimConfig(n=3, reference=3, seed=SEED, shard_size=2,
                                                  programmes=BGS), workers=1, progress=False)
    assert m["n_rows"] == 6 and m["provenance"]["command"].endswith("--reference 3")
    assert m["simulator"]["reference_rows"] == {"first": 3, "n": 3, "split": "reference"}
    ds = open_dataset(tmp_path / "r")
    for i in range(6):      # the survey's rows are those of a run without --reference, and the
        np.testing.assert_array_equal(ds[i]["spectrum_flux"], rows[i]["spectrum_flux"])
    cols = ds.read_columns(["object_id", "split"])  # reference rows continue its row numbers
    ids = cols["object_id"]
    np.testing.assert_array_equal(ids, SEED * survey.ID_STRIDE + np.arange(6))
    assert list(cols["split"][:3]) == list(assign_splits(ids[:3]))
    assert list(cols["split"][3:]) == ["reference"] * 3
    held = [split_indices(ids, s, stored=cols["split"]) for s in ("train", "val", "test")]
    assert sorted(np.concatenate(held).tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(split_indices(ids, "reference", stored=cols["split"]), [3, 4, 5])
    # without the column (any other dataset) no row is a reference row
    assert split_indices(ids, "reference").size == 0
    # killed in the reference rows (manifest and last shard missing): the rerun finishes them
    (tmp_path / "r" / "manifest.json").unlink()
    (tmp_path / "r" / "part-00002.parquet").unlink()
    again = simulate_survey(tmp_path / "r", SimConfig(n=3, reference=3, seed=SEED, shard_size=2,
                                                      programmes=BGS), workers=1, progress=False)
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in m["shards"]]


def test_report_shows_each_instrument_effect_beside_real_desi(sim, tmp_path, real_data,
                                                             monkeypatch):
    from galclip.sim import survey
    from galclip.sim.report import write_report
    from galclip.sim.survey import SimConfig, simulate_survey

    survey._WORKER = sim
    simulate_survey(tmp_path / "d", SimConfig(n=6, seed=SEED, shard_size=3), workers=1,
                    progress=False)
    monkeypatch.setenv("GALCLIP_REAL_DATA", str(real_data))
    md = write_report(tmp_path / "d").read_text()
    assert "## Instrument effects against real DESI spectra" in md
    for effect in ("exposure", "noise", "sky residual", "calibration", "fibre loss", "masking"):
        assert f"| {effect} |" in md
    assert (tmp_path / "d-realism" / "instrument.png").stat().st_size > 10_000


def test_parallel_workers_give_identical_rows(rows, tmp_path):
    from galclip.data import open_dataset
    from galclip.sim.survey import SimConfig, simulate_survey

    simulate_survey(tmp_path / "p", SimConfig(n=4, seed=SEED, shard_size=2, programmes=BGS), workers=2,
                    progress=False)
    ds = open_dataset(tmp_path / "p")
    for i in range(4):
        np.testing.assert_array_equal(ds[i]["spectrum_flux"], rows[i]["spectrum_flux"])
        np.testing.assert_array_equal(ds[i]["image"], rows[i]["image"])


def test_bad_arguments_give_clear_errors_and_write_nothing(tmp_path, capsys):
    from galclip.cli import main

    assert main(["simulate", "--n", "0", "--out", str(tmp_path / "x")]) == 2
    assert "argument --n: must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["simulate", "--n", "5", "--out", str(other)]) == 2
    assert "not a simulated galclip dataset" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert main(["simulate", "--n", "5", "--out", "/proc/galclip-test"]) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_state_file_guards_against_mixing_settings(tmp_path):
    from galclip.sim.survey import STATE_FILE, SimConfig, _prepare_output

    out = tmp_path / "s"
    _prepare_output(out, SimConfig(n=4, seed=1))
    assert json.loads((out / STATE_FILE).read_text())["inputs"]["config"]["seed"] == 1
    with pytest.raises(FileExistsError, match="other inputs or options.*config.seed"):
        _prepare_output(out, SimConfig(n=4, seed=2))


def test_colour_redshift_relation_follows_sdss(real_data):
    """g - r against redshift at the SDSS limit (r < 17.6, SDSS filters): medians within
    0.1 mag of the real SDSS DR7 sample in each redshift bin."""
    from galclip.sim.report import colour_redshift_comparison, load_sdss
    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=1, seed=SEED, mag_limit=17.6, programmes=BGS))
    rng = np.random.default_rng(11)
    z, gr = [], []
    for _ in range(160):
        g = sim.draw_accepted(rng)
        pb, pd = sim.engine.photometry(g.bulge, g.redshift), sim.engine.photometry(g.disc, g.redshift)
        z.append(g.redshift)
        gr.append(C.nanomaggy_to_mag(pb["sdss_g"] + pd["sdss_g"])
                  - C.nanomaggy_to_mag(pb["sdss_r"] + pd["sdss_r"]))
    rz, rgr, _ = load_sdss(real_data)
    cmp = colour_redshift_comparison(np.array(z), np.array(gr), rz, rgr,
                                     bins=np.array([0.02, 0.07, 0.12, 0.2]))
    assert min(cmp["sim_n"]) >= 20
    assert np.max(np.abs(cmp["difference"])) < 0.1, cmp


def test_flux_bounds_bracket_the_exact_flux_in_every_selection_band(sim):
    """The target selection rejects draws on these bounds (fluxbound.py): a lower bound above
    the exact flux, or an upper one below it, would change which galaxies are accepted."""
    from galclip.sim.population import draw_galaxy

    rng = np.random.default_rng(12)
    bands = ("g", "r", "z", "w1")
    dust = {b: sim.engine.min_attenuation_ratio(b, 0.01, 1.6) for b in bands}
    lows = []
    for _ in range(25):
        g = draw_galaxy(rng, lambda z: 9.0)   # 0.01 < z < 1.6: every programme's redshifts
        total = dict.fromkeys(bands, 0.0)
        for p in (g.bulge, g.disc):
            exact = sim.engine.photometry(p, g.redshift)
            for band in bands:
                lo, hi = sim.engine.flux_bounds(p, g.redshift, band)
                assert lo <= exact[band] <= hi, (band, lo, exact[band], hi)
                lows.append(lo / exact[band])
                total[band] += exact[band]
        for band in ("g", "r", "z"):   # the (z, age) table's bound, where there is one
            assert sim.flux_upper_bound(g, band, dust[band]) >= total[band], band
    assert np.median(lows) > 0.5   # the old stars carry most of the light: the bound is useful
