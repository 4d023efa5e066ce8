"""DESI observing conditions and the instrument effects a real coadd carries beyond photon noise.

- Exposure: each galaxy is observed on one tile drawn from the 753 DESI main-survey exposures
  that ``desispec`` ships as the reference set of its effective-time calibration
  (``data/tsnr/tsnr_refset_etc.csv``; Guy et al. 2023, AJ 165, 144; Schlafly et al. 2023,
  AJ 166, 259), bright tiles for BGS Bright and Faint, dark tiles for LRG and ELG. A tile's
  effective time (EFFTIME_SPEC summed over its exposures; goals 180 s bright, 1000 s dark), its
  r-band sky brightness (SKY_MAG_R_SPEC) and seeing (SEEING_ETC; tiles without a seeing
  measurement are left out) are used together. The effective
  time is the exposure time in nominal dark conditions that gives the same S/N, so the
  simulator's sky-limited noise follows it: open-shutter time = effective time x sky factor.
- Deep exposures: a share ``deep_fraction`` of galaxies (``SimConfig``) is observed to
  U(:data:`DEEP_DEPTH`) times its tile's effective time, as DESI's Survey Validation observed
  its targets several times deeper than the main survey (DESI Collaboration 2024, AJ 167, 62;
  the Early Data Release) and as the first month's validation spectra were: a model that has
  only seen main-survey noise reads a spectrum that clean as a different galaxy (real BGS and
  LRGs read low; benchmarks/RESULTS.md, "Deep exposures").
- Fibre flux calibration: the DESI pipeline calibrates every fibre as a point source, dividing
  the fibre's light by the point-source fibre fraction at the seeing (``PSF_TO_FIBER_SPECFLUX``;
  Guy et al. 2023, Sec. 4.9), so an extended galaxy's spectrum lies between its fibre and its
  total flux. The seeing FWHM varies as wavelength^(-1/5) (Kolmogorov turbulence; the tile's
  seeing is the guide cameras' r-band one): both the galaxy's and a point source's fibre
  fractions are computed at 6400 A and 4000 A and interpolated in log wavelength, so the point-
  source calibration over-corrects the blue of an extended galaxy (its spectrum comes out bluer
  than its imaging, as the real ones do in ``report_instrument.py``).
- Spectrophotometric calibration error: a smooth multiplicative 1 + sum_k a_k P_k(x) (Legendre,
  k = 1..3 over 3600-9824 A), of ``CALIB_RMS`` rms over the spectrum on average.
- Sky-subtraction residuals: the sky lines are subtracted to a per-spectrum fraction of their
  flux (uniform in 0 .. ``SKY_RESIDUAL_MAX``), per pixel, and this excess is not in the ivar,
  as in the pipeline; measured on the real coadds in ``report_instrument.py``.
- Masking: runs of 3-6 masked pixels (cosmic rays, bad CCD columns), Poisson ``MASK_RUNS_PER_ARM``
  per arm, written as the pipeline writes them: ivar 0 and flux 0; redrock ignores those pixels.
"""
from __future__ import annotations

import csv
from functools import lru_cache

import numpy as np

from galclip import conventions as C
from galclip.sim import instrument as I

PROGRAMMES = ("bgs_bright", "bgs_faint", "lrg", "elg")
DEFAULT_PROGRAMME = "bgs_bright"
#: which DESI observing conditions (FAPRGRM) each target programme is observed in
CONDITIONS = {"bgs_bright": "bright", "bgs_faint": "bright", "lrg": "dark", "elg": "dark"}
GOAL_EFFTIME_S = {"bright": 180.0, "dark": 1000.0}
CALIB_RMS = 0.03
SKY_RESIDUAL_MAX = 0.012
DEEP_DEPTH = (2.0, 5.0)   # a deep exposure's effective time over its tile's (uniform)
MASK_RUNS_PER_ARM = 0.75
MASK_RUN_LENGTH = (3, 6)
ARM_RANGES = {"B": (3600.0, 5800.0), "R": (5760.0, 7620.0), "Z": (7520.0, 9824.0)}
REFSET = "data/tsnr/tsnr_refset_etc.csv"


SEEING_WAVE = 6400.0   # A: the r-band guide-camera seeing
BLUE_WAVE = 4000.0     # A: the second node of the fibre-fraction curves


def seeing_at(seeing_r: float, wave: float) -> float:
    """Seeing FWHM at ``wave`` (A) from the r-band one: FWHM proportional to wave^(-1/5)."""
    return seeing_r * (wave / SEEING_WAVE) ** -0.2


def fraction_curve(at_r: float, at_blue: float) -> np.ndarray:
    """A fibre fraction over the grid, linear in log wavelength through its values at
    ``SEEING_WAVE`` and ``BLUE_WAVE`` (clipped to [0, 1])."""
    x = np.log(C.wavelength_grid() / SEEING_WAVE) / np.log(BLUE_WAVE / SEEING_WAVE)
    return np.clip(at_r + (at_blue - at_r) * x, 0.0, 1.0)


def fibre_light(profiles: dict, seds: dict[str, np.ndarray], seeing_r: float) -> dict:
    """The light of unit-flux GalSim ``profiles`` with spectra ``seds`` (same keys) that enters
    the fibre at the chromatic seeing: 'fibre' (7781,), the r-band fibre fractions per profile
    ('r_fractions'), the point-source fraction at r ('psf_to_fiber') and over the grid
    ('psf_curve', by which the pipeline's point-source calibration divides)."""
    from galclip.sim.imaging import fiber_fractions, point_source_fiber_fraction

    blue = seeing_at(seeing_r, BLUE_WAVE)
    at_r, at_blue = fiber_fractions(profiles, seeing_r), fiber_fractions(profiles, blue)
    fibre = sum(fraction_curve(at_r[k], at_blue[k]) * seds[k] for k in profiles)
    psf = point_source_fiber_fraction(seeing_r)
    return {"fibre": fibre, "r_fractions": at_r, "psf_to_fiber": psf,
            "psf_curve": fraction_curve(psf, point_source_fiber_fraction(blue))}


def check_programme(programme: str) -> str:
    if programme not in CONDITIONS:
        raise ValueError(f"unknown DESI programme {programme!r}; expected one of {list(PROGRAMMES)}")
    return programme


@lru_cache(maxsize=2)
def tile_conditions(condition: str) -> dict[str, np.ndarray]:
    """Per-tile effective time, summed exposure time, r-band sky (mag/arcsec^2, effective-time
    weighted) and seeing (arcsec) of DESI's main-survey reference exposures in ``condition``."""
    import importlib.resources as ir

    tiles: dict[str, list[list[float]]] = {}
    with open(ir.files("desispec") / REFSET, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["FAPRGRM"] != condition or row["SURVEY"] != "main":
                continue
            tiles.setdefault(row["TILEID"], []).append(
                [float(row[k]) for k in ("EFFTIME_SPEC", "EXPTIME", "SKY_MAG_R_SPEC", "SEEING_ETC")])
    if not tiles:
        raise ValueError(f"desispec {REFSET}: no main-survey {condition} exposures")
    eff, exp, sky, see = [], [], [], []
    for rows in tiles.values():
        a = np.asarray(rows)
        seen = a[:, 3] > 0     # a few exposures have no seeing measurement (0)
        if not seen.any():
            continue
        w = a[:, 0] / a[:, 0].sum()
        eff.append(a[:, 0].sum())
        exp.append(a[:, 1].sum())
        sky.append(np.sum(w * a[:, 2]))
        see.append(np.average(a[seen, 3], weights=a[seen, 0]))
    return {"efftime": np.array(eff), "exptime": np.array(exp), "sky_mag_r": np.array(sky),
            "seeing": np.array(see)}


@lru_cache(maxsize=1)
def dark_sky_mag_r() -> float:
    """Median r-band sky brightness of the dark reference tiles: the simulator's dark sky."""
    return float(np.median(tile_conditions("dark")["sky_mag_r"]))


def draw_conditions(rng: np.random.Generator, programme: str = DEFAULT_PROGRAMME,
                    deep_fraction: float = 0.0) -> tuple[I.Exposure, float]:
    """(exposure, seeing FWHM in arcsec) of one galaxy: a real DESI tile of its programme, with
    probability ``deep_fraction`` observed U(DEEP_DEPTH) times longer (no draw when 0, so the
    main-survey-only simulation is unchanged)."""
    t = tile_conditions(CONDITIONS[check_programme(programme)])
    i = int(rng.integers(len(t["efftime"])))
    sky_factor = 10 ** (-0.4 * (t["sky_mag_r"][i] - dark_sky_mag_r()))
    eff = float(t["efftime"][i])
    if deep_fraction > 0 and rng.random() < deep_fraction:
        eff *= rng.uniform(*DEEP_DEPTH)
    return I.Exposure(exptime_s=eff * sky_factor, sky_factor=float(sky_factor),
                      efftime_s=eff), float(t["seeing"][i])


@lru_cache(maxsize=1)
def sky_lines() -> np.ndarray:
    """The dark sky's emission lines per arcsec^2 (sky minus its 101-pixel running median)."""
    from scipy.ndimage import median_filter

    sky = I.dark_sky()
    return np.clip(sky - median_filter(sky, 101, mode="nearest"), 0.0, None)


def sky_line_flux(exp: I.Exposure) -> np.ndarray:
    """Sky-line flux in the fibre during the exposure, 1e-17 erg/s/cm^2/A."""
    return sky_lines() * I.FIBER_AREA_ARCSEC2 * exp.sky_factor


def sky_residual(exp: I.Exposure, rng: np.random.Generator, fraction: float | None = None
                 ) -> np.ndarray:
    """Sky-subtraction residual (fibre flux units): fraction x sky-line flux x N(0, 1)."""
    f = rng.uniform(0.0, SKY_RESIDUAL_MAX) if fraction is None else fraction
    return f * sky_line_flux(exp) * rng.normal(size=C.N_WAVE)


def calibration_error(rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative calibration 1 + sum_{k=1..3} a_k P_k(x), x in [-1, 1] over the
    grid; a_k ~ N(0, s) with s chosen so the expected rms over wavelength is ``CALIB_RMS``
    (Legendre P_k has rms 1 / sqrt(2k + 1) on [-1, 1])."""
    from numpy.polynomial import legendre

    k = np.arange(1, 4)
    s = CALIB_RMS / np.sqrt(np.sum(1.0 / (2 * k + 1)))
    x = np.linspace(-1.0, 1.0, C.N_WAVE)
    return 1.0 + legendre.legval(x, np.concatenate([[0.0], rng.normal(0.0, s, 3)]))


def masked_runs(rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the pixels lost to cosmic rays and bad columns: runs of 3-6 pixels."""
    wave = C.wavelength_grid()
    bad = np.zeros(C.N_WAVE, dtype=bool)
    for lo, hi in ARM_RANGES.values():
        idx = np.flatnonzero((wave >= lo) & (wave <= hi))
        for _ in range(rng.poisson(MASK_RUNS_PER_ARM)):
            start = idx[0] + int(rng.integers(len(idx) - MASK_RUN_LENGTH[1]))
            bad[start: start + int(rng.integers(MASK_RUN_LENGTH[0], MASK_RUN_LENGTH[1] + 1))] = True
    return bad


def observe(fibre: np.ndarray, exp: I.Exposure, psf_fraction: float | np.ndarray,
            rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """A calibrated DESI spectrum of the (resolution-blurred) fibre light ``fibre``;
    ``psf_fraction``: the point-source fibre fraction, a number or one per pixel.

    Returns flux and ivar (float32), the noiseless calibrated expectation, the sky residual
    and the calibration vector."""
    var = I.spectrum_variance(fibre, exp)
    resid = sky_residual(exp, rng)
    raw = fibre + rng.normal(size=fibre.shape) * np.sqrt(var) + resid
    calib = calibration_error(rng) / psf_fraction
    flux, ivar = raw * calib, 1.0 / (var * calib**2)
    bad = masked_runs(rng)
    flux[bad], ivar[bad] = 0.0, 0.0
    return {"flux": flux.astype(np.float32), "ivar": ivar.astype(np.float32),
            "expected": (fibre * calib).astype(np.float32), "sky_residual": resid * calib,
            "calibration": calib * psf_fraction}
