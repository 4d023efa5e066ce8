"""Physical conventions shared by every galclip stage, defined in one place.

Images follow Legacy Survey DR9/DR10 cutouts (Dey et al. 2019): g, r, z bands, 0.262 arcsec
pixels, flux per pixel in nanomaggies (1 nanomaggy = 22.5 AB mag, i.e. 3.631e-6 Jy).
Spectra follow the DESI coadd grid used by AstroCLIP (Parker et al. 2024): 7781 pixels,
lambda_i = 3600 + 0.8 i Angstrom, flux in 1e-17 erg s^-1 cm^-2 A^-1.
"""
from __future__ import annotations

import numpy as np

BANDS: tuple[str, ...] = ("g", "r", "z")
PIXEL_SCALE_ARCSEC: float = 0.262
IMAGE_SIZE: int = 152
IMAGE_SHAPE: tuple[int, int, int] = (len(BANDS), IMAGE_SIZE, IMAGE_SIZE)  # (bands, H, W)
IMAGE_UNIT = "nanomaggy"
NANOMAGGY_ZEROPOINT_AB: float = 22.5
#: Per-band softening s_b (nanomaggy) of the arcsinh stretch asinh(x_b / s_b) that the image
#: encoders and report figures apply (legacypipe's g, r, z band scales).
BAND_SOFTENING_NMGY: tuple[float, ...] = (0.0066, 0.01, 0.025)

#: Redshifts the survey simulator draws: BGS from 0.01, ELGs to 1.6 (the windows of DESI's
#: programmes, ``galclip.sim.targeting``; docs/simulate.md). The dataset format itself accepts
#: any redshift in [-0.01, 20] (stars near 0, quasars beyond 2).
SIMULATED_REDSHIFT_RANGE: tuple[float, float] = (0.01, 1.6)

WAVE_MIN: float = 3600.0
WAVE_STEP: float = 0.8
N_WAVE: int = 7781
SPECTRUM_UNIT = "1e-17 erg s^-1 cm^-2 Angstrom^-1"
FLUX_UNIT_CGS: float = 1e-17
FIBER_DIAMETER_ARCSEC: float = 1.5  # DESI fibre, 107 micron at the focal plane

#: Main emission lines, rest-frame vacuum wavelengths in Angstrom (explorer and report figures).
EMISSION_LINES: tuple[tuple[str, float], ...] = (
    ("[OII]", 3728.5), ("Hβ", 4862.7), ("[OIII]", 4960.3), ("[OIII]", 5008.2),
    ("Hα", 6564.6), ("[NII]", 6585.3), ("[SII]", 6718.3), ("[SII]", 6732.7),
)
#: Main absorption features, rest-frame Angstrom (vacuum; Ca H+K and the 4000 A break region).
ABSORPTION_LINES: tuple[tuple[str, float], ...] = (("Ca K", 3934.8), ("Ca H", 3969.6),
                                                   ("G", 4305.6), ("Mg b", 5176.7), ("Na D", 5895.6))


def wavelength_grid() -> np.ndarray:
    """The DESI coadd wavelength grid in Angstrom, shape (7781,), 3600 ... 9824."""
    return WAVE_MIN + WAVE_STEP * np.arange(N_WAVE, dtype=np.float64)


def nanomaggy_to_mag(flux: np.ndarray | float) -> np.ndarray:
    """AB magnitude of a flux in nanomaggies (NaN for non-positive flux)."""
    f = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, NANOMAGGY_ZEROPOINT_AB - 2.5 * np.log10(f), np.nan)


def mag_to_nanomaggy(mag: np.ndarray | float) -> np.ndarray:
    """Flux in nanomaggies of an AB magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - NANOMAGGY_ZEROPOINT_AB))
