"""The DESI spectrograph and the Legacy Survey cameras as the simulator sees them.

Spectra: DESI (DESI Collaboration 2022, AJ 164, 207; Guy et al. 2023, AJ 165, 144).
- Resolution: Gaussian line-spread function whose width follows the real resolution matrices
  of ``shared/data/real/desi/coadd-4-80613-thru20210324.fits`` (sigma measured from the 11
  diagonals of each arm: B 0.70-0.72 A, R 0.63-0.65 A, Z 0.68-0.79 A).
- Sky: the smooth dark-sky continuum shipped by ``specsim`` (data/test/test_sky.ecsv) plus
  the sky emission lines shipped by ``desispec`` (data/spec-sky.dat), both per arcsec^2,
  scaled by a moon/twilight factor for bright time (the Bright Galaxy Survey observes then).
- Counts: Mayall collecting area, a smooth total-throughput curve (atmosphere to CCD,
  approximating the DESI instrument paper's figure), read noise per pixel. The overall level
  is calibrated on the real pipeline coadds' target fibres: their sky-limited noise per unit
  effective time (sigma^2 x EFFTIME x PSF_TO_FIBER^2, in bins of sky flux; effective time from
  TSNR2_LRG) is matched by the sky-only noise of the model (``report_instrument.py``).
- Conditions, calibration, sky residuals and masking of a real coadd: ``observing.py``.

Images: Legacy Survey DR9 (Dey et al. 2019): Moffat PSF (beta = 3.5), per-band seeing and
5-sigma point-source depths (median g 24.0, r 23.4, z 22.5 in DR9 DECaLS).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from galclip import conventions as C

H_CGS = 6.62607015e-27  # erg s
C_ANGSTROM = 2.99792458e18  # A / s
MAYALL_AREA_CM2 = 8.678e4  # unobstructed collecting area of the Mayall 4 m, cm^2
FIBER_AREA_ARCSEC2 = np.pi * (C.FIBER_DIAMETER_ARCSEC / 2) ** 2

# (wavelength A, resolution sigma A): smooth fit to the real resolution matrices (see docstring)
_RES_SIGMA = np.array([[3600, 0.70], [4700, 0.716], [5800, 0.70], [5760, 0.63], [6690, 0.647],
                       [7620, 0.643], [7520, 0.68], [8672, 0.735], [9824, 0.79]])
# Total throughput (atmosphere at airmass 1.1 + telescope + corrector + fibre + spectrograph + CCD)
_THROUGHPUT = np.array([[3600, 0.10], [3800, 0.18], [4200, 0.26], [5000, 0.30], [5700, 0.29],
                        [5780, 0.30], [5900, 0.40], [6600, 0.45], [7500, 0.42], [7570, 0.40],
                        [7700, 0.57], [8500, 0.55], [9200, 0.43], [9824, 0.26]])
READ_NOISE_E2_PER_PIXEL = 3.0 ** 2 * 4.0  # 3 e- rms, ~4 CCD pixels across a fibre trace
SECONDS_PER_READ = 900.0  # DESI splits long exposures
CALIBRATION = 0.68  # scales the throughput: sky-limited noise per effective time as the real coadds


def resolution_sigma(wave: np.ndarray) -> np.ndarray:
    """Line-spread-function sigma in Angstrom at observed wavelength ``wave``."""
    order = np.argsort(_RES_SIGMA[:, 0], kind="stable")
    return np.interp(wave, _RES_SIGMA[order, 0], _RES_SIGMA[order, 1])


def throughput(wave: np.ndarray) -> np.ndarray:
    return CALIBRATION * np.interp(wave, _THROUGHPUT[:, 0], _THROUGHPUT[:, 1])


@lru_cache(maxsize=1)
def dark_sky() -> np.ndarray:
    """Dark-sky surface brightness on the DESI grid, 1e-17 erg/s/cm^2/A/arcsec^2, at DESI
    resolution: smooth continuum (specsim) + emission lines (desispec), shape (7781,)."""
    import importlib.resources as ir

    from astropy.table import Table

    wave = C.wavelength_grid()
    cont = Table.read(str(ir.files("specsim") / "data/test/test_sky.ecsv"), format="ascii.ecsv")
    sky = np.interp(wave, np.asarray(cont["wavelength"]), np.asarray(cont["flux"])) / C.FLUX_UNIT_CGS
    lines = np.loadtxt(str(ir.files("desispec") / "data/spec-sky.dat"))  # 0.1 A sampling
    # integrate the 0.1 A line spectrum into 0.8 A pixels, then blur to DESI resolution
    edges = np.concatenate([wave - C.WAVE_STEP / 2, [wave[-1] + C.WAVE_STEP / 2]])
    cum = np.concatenate([[0.0], np.cumsum(lines[:, 1]) * 0.1])
    line_edges = np.concatenate([[lines[0, 0] - 0.05], lines[:, 0] + 0.05])
    line_pix = np.diff(np.interp(edges, line_edges, cum)) / C.WAVE_STEP
    return sky + gaussian_blur_pixels(line_pix, resolution_sigma(wave) / C.WAVE_STEP)


def gaussian_blur_pixels(flux: np.ndarray, sigma_pix: np.ndarray | float, half: int = 6
                         ) -> np.ndarray:
    """Convolve a spectrum with a Gaussian whose width (pixels) may vary along the spectrum."""
    n = flux.shape[-1]
    sig = np.broadcast_to(np.asarray(sigma_pix, dtype=np.float64), (n,))
    offs = np.arange(-half, half + 1)
    kern = np.exp(-0.5 * (offs[:, None] / sig[None, :]) ** 2)  # (taps, n)
    kern /= kern.sum(0, keepdims=True)
    padded = np.pad(flux, [(0, 0)] * (flux.ndim - 1) + [(half, half)], mode="edge")
    out = np.zeros_like(flux, dtype=np.float64)
    for j, o in enumerate(offs):
        out += kern[j] * padded[..., half + o: half + o + n]
    return out


@dataclass(frozen=True)
class Exposure:
    """One spectroscopic observing condition: open-shutter time, sky brightness and the
    effective time (the exposure time in nominal dark conditions giving the same S/N)."""

    exptime_s: float
    sky_factor: float  # sky brightness relative to the dark sky (moon, twilight)
    efftime_s: float = float("nan")


def counts_per_flux(wave: np.ndarray, exptime_s: float) -> np.ndarray:
    """Detected electrons per pixel per unit flux (1e-17 erg/s/cm^2/A)."""
    photon_energy = H_CGS * C_ANGSTROM / wave
    return (C.FLUX_UNIT_CGS * MAYALL_AREA_CM2 * exptime_s * C.WAVE_STEP * throughput(wave)
            / photon_energy)


def spectrum_variance(noiseless: np.ndarray, exp: Exposure) -> np.ndarray:
    """Per-pixel flux variance (1e-17 units)^2: object and sky Poisson noise plus read noise."""
    wave = C.wavelength_grid()
    k = counts_per_flux(wave, exp.exptime_s)
    sky = dark_sky() * exp.sky_factor * FIBER_AREA_ARCSEC2
    n_reads = max(1.0, np.ceil(exp.exptime_s / SECONDS_PER_READ))
    electrons = k * (np.clip(noiseless, 0, None) + sky) + READ_NOISE_E2_PER_PIXEL * n_reads
    return electrons / k**2


def write_noise_model(path) -> None:
    """The shape of this noise model that :mod:`galclip.data.noise` ships (it cannot import the
    simulator: the sky comes from the ``sim`` extra's packages): the dark sky per fibre (flux
    units), the detected electrons per unit flux per second and the read noise per pixel.
    ``tests/test_noise_estimate.py`` checks that the shipped file is what this writes."""
    wave = C.wavelength_grid()
    np.savez_compressed(path, sky=(dark_sky() * FIBER_AREA_ARCSEC2).astype(np.float32),
                        counts_per_flux_per_s=counts_per_flux(wave, 1.0).astype(np.float32),
                        read_noise_e2=np.float32(READ_NOISE_E2_PER_PIXEL),
                        seconds_per_read=np.float32(SECONDS_PER_READ))


# ----------------------------------------------------------------------------- imaging
#: Median DR9 5-sigma PSF depths (AB) and the scatter drawn around them.
DR9_PSF_DEPTH = {"g": 24.0, "r": 23.4, "z": 22.5}
DR9_DEPTH_SCATTER = 0.25
MOFFAT_BETA = 3.5


def pixel_sigma_nanomaggy(psf_depth_mag: float, fwhm_arcsec: float) -> float:
    """Per-pixel noise (nanomaggies) giving a 5-sigma point-source depth ``psf_depth_mag``.

    For optimal PSF photometry the flux error is sigma_pix * sqrt(NEA) with the noise-equivalent
    area NEA = 1 / sum(psf^2); for a Moffat(beta) profile NEA = pi (2 beta - 1) / (beta - 1)^2 *
    alpha^2 with alpha = FWHM / (2 sqrt(2^(1/beta) - 1)).
    """
    beta = MOFFAT_BETA
    alpha = fwhm_arcsec / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0)) / C.PIXEL_SCALE_ARCSEC
    nea = np.pi * (2 * beta - 1) / (beta - 1) ** 2 * alpha**2
    flux_5sig = float(C.mag_to_nanomaggy(psf_depth_mag))
    return flux_5sig / 5.0 / np.sqrt(nea)
