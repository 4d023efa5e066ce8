"""The population model of the simulator, sampled directly (no photometry, no spectra): each
choice of ``galclip.sim.population`` that real surveys check has a test here."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("prospect") is None:  # its Gallazzi et al. table; no import needed
    pytest.skip("the population model needs the 'sim' extra", allow_module_level=True)


def test_mass_function_is_leja2020_and_evolves():
    """Leja et al. 2020's double Schechter function at its anchor redshifts, held below z = 0.2;
    the massive end thins out towards z = 1.6."""
    from galclip.sim.population import number_above, smf_logphi

    def leja(logm, logphi1, logphi2, logm_star):
        x = 10 ** (logm - logm_star)
        return np.log10(np.log(10) * np.exp(-x) * (10**logphi1 * x**0.72 + 10**logphi2 * x**-0.48))

    for logm in (9.0, 10.5, 11.5):
        assert smf_logphi(logm, 0.2) == pytest.approx(leja(logm, -2.44, -2.89, 10.79), abs=1e-6)
        assert smf_logphi(logm, 1.6) == pytest.approx(leja(logm, -3.08, -3.29, 10.88), abs=1e-6)
        assert smf_logphi(logm, 0.05) == pytest.approx(smf_logphi(logm, 0.2), abs=1e-9)
    assert number_above(11.3, 1.0) < 0.85 * number_above(11.3, 0.2)
    # GAMA's z < 0.06 fit (Baldry et al. 2012), the simulator's earlier mass function, has
    # 2.9e-5 Mpc^-3 above 10^11.3 Msun: a third of SDSS's luminous galaxies at r < 17.6
    assert number_above(11.3, 0.1) > 3 * 2.9e-5


def test_quenched_galaxies_form_no_stars_in_either_component():
    """At z ~ 0.7 (LRGs) a quenched galaxy's bulge and disc both have sSFR below the
    quiescence threshold 0.2 / t_H; the bulge used to keep forming stars at the main
    sequence's rate there."""
    from galclip.sim.population import age_of_universe, delayed_ssfr, draw_galaxy

    rng = np.random.default_rng(5)
    z = 0.7
    table = (np.array([0.0, 1.0]), np.array([z, z]))
    threshold = 0.2 / age_of_universe(z)   # per Gyr
    ssfr = []
    while len(ssfr) < 60:
        g = draw_galaxy(rng, lambda _: 11.0, table)
        if g.quenched:
            ssfr += [delayed_ssfr(p.age_gyr, p.tau_gyr) for p in (g.bulge, g.disc)]
    assert max(ssfr) < threshold


def test_sdss_reference_holds_galaxies_of_the_bgs_window_only(real_data):
    """The SDSS DR7 file also holds stars, quasars and failed photometry; the colour-redshift
    reference keeps its galaxies at 0.01 < z < 0.6 with sane colours."""
    from galclip.sim.report import load_sdss

    z, gr, r = load_sdss(real_data)
    assert 24000 < len(z) < 24496
    assert z.min() > 0.01 and z.max() < 0.6
    assert gr.min() > -1 and gr.max() < 4 and r.max() <= 17.6


def test_star_forming_dust_follows_stellar_mass_not_redshift():
    """Discs of 10^9.4-9.6 Msun have the same dust at z = 0.1 and z = 1.3 (Garn & Best 2010's
    A_Halpha(M*), 0.56 mag at 10^9.5 Msun, i.e. Av 0.34 with the birth-cloud factor); the
    SFR-based Av gave them 0.8 mag at z = 1.3, reddening ELGs."""
    from galclip.sim.population import draw_galaxy

    rng = np.random.default_rng(6)
    for z in (0.1, 1.3):
        table = (np.array([0.0, 1.0]), np.array([z, z]))
        av = []
        while len(av) < 80:
            g = draw_galaxy(rng, lambda _: 9.4, table)
            if not g.quenched and g.logm_target < 9.6:
                face_on = 1.0 + 0.6 * (1.0 - np.cos(np.radians(g.inclination_deg)))
                av.append(g.disc.av / face_on)
        assert np.median(av) == pytest.approx(0.56 * 4.05 / (2 * 3.33), abs=0.08), z


def test_a_third_of_dwarfs_are_quenched():
    """Galaxies of 10^9.4-9.6 Msun are quenched ~30 % of the time (Peng et al. 2010's mass
    quenching plus satellite quenching, Peng et al. 2012); the earlier sigmoid gave 13 %, and
    simulated bright galaxies at z < 0.07 were bluer than SDSS's."""
    from galclip.sim.population import draw_galaxy

    rng = np.random.default_rng(7)
    table = (np.array([0.0, 1.0]), np.array([0.05, 0.05]))
    quenched = []
    while len(quenched) < 400:
        g = draw_galaxy(rng, lambda _: 9.4, table)
        if g.logm_target < 9.6:
            quenched.append(g.quenched)
    assert np.mean(quenched) == pytest.approx(0.30, abs=0.06)


def test_sizes_shrink_with_redshift_at_fixed_mass_as_van_der_wel_2014():
    """At fixed stellar mass quiescent bulges are (1.9 / 1.2)^-1.48 (0.30 dex) smaller at
    z = 0.9 than at z = 0.2 and star-forming discs (1.9 / 1.2)^-0.75 (0.15 dex); without the
    evolution simulated z ~ 0.9 LRGs were too extended for DESI's fibre-magnitude cut."""
    from galclip.sim.population import draw_galaxy, kpc_per_arcsec

    def log_sizes(z: float, quenched: bool, seed: int) -> float:
        rng, out = np.random.default_rng(seed), []
        while len(out) < 400:
            g = draw_galaxy(rng, lambda _z: 11.0, (np.array([0.0, 1.0]), np.array([z, z])))
            if g.quenched != quenched:
                continue
            r = g.r_half_bulge if quenched else g.r_half_disc
            slope = 0.75 if quenched else 0.22
            out.append(np.log10(r * kpc_per_arcsec(z)) - slope * (g.logm_target - 11.0))
        return float(np.median(out))

    growth = np.log10(1.9 / 1.2)
    assert log_sizes(0.9, True, 1) - log_sizes(0.2, True, 2) == pytest.approx(-1.48 * growth, abs=0.04)
    assert log_sizes(0.9, False, 3) - log_sizes(0.2, False, 4) == pytest.approx(-0.75 * growth, abs=0.04)
