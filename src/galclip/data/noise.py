"""The noise of a spectrum that comes without an inverse variance, estimated from its own flux.

Some real spectra are published without errors (the DESI "Andes" student tables, spectra cut
out of a figure, a colleague's FITS with one flux column). galclip's spectrum encoders take an
ivar, and a constant one would tell them every pixel is equally good, so such a spectrum gets
an estimated ivar and is marked as estimated wherever it goes (``ivar_estimated``).

Estimator: DER_SNR (Stoehr et al. 2008, ASP Conf. Ser. 394, 505), applied locally. For pixel j,

    d_j = | 2 f_j - f_{j-2} - f_{j+2} |

removes any continuum that is linear over 5 pixels (4 Angstrom on the DESI grid), so d_j is pure
noise wherever the spectrum is smooth: for independent Gaussian noise of width sigma,
2 f_j - f_{j-2} - f_{j+2} has width sqrt(6) sigma and the median of |.| is 0.6745 sqrt(6) sigma,
hence sigma = 1.482602 / sqrt(6) * median(d). Pixels two apart (not adjacent) are differenced
because a coadd's neighbouring pixels are correlated by the resampling and the resolution
matrix. The median is taken in a running window of :data:`WINDOW` pixels (80 Angstrom): wide
enough that a line (a few to ~10 pixels) moves the median little, and the statistical error of
the median is ~15 %; narrow enough to follow the noise as it changes across an arm (the
throughput falls at the arm ends, the sky brightens in the red). Each DESI arm (and each overlap
of two arms, where a merged spectrum averages two cameras) is a separate segment
(:data:`DESI_SEGMENTS`), because the noise jumps at the dichroics.

Correlated noise. A spectrum smoothed by its publisher (the DESI "Andes" student tables are
Gaussian-smoothed over ~2-3 pixels: their residuals' autocorrelation is 0.95 at one pixel and
0.8 at two) has little power at the two-pixel scale DER_SNR measures, so the pixel estimate
reads it as 10-20 times less noisy than it is. What a model needs is the noise of the spectrum
as the instrument recorded it, the white-noise level that has the same power on scales wider
than the smoothing: a smoothing kernel preserves the mean over a block of pixels, so the mean
of ``m`` pixels still has variance sigma_white^2 / m. Hence the check (:func:`correlation_factor`):
DER_SNR on the means of :data:`BLOCK` (8) consecutive pixels, times sqrt(8), over the pixel
DER_SNR, both as medians over the whole spectrum. For independent noise the two agree (on
simulated spectra the ratio is 1.00-1.19, 5-95 %: real structure on 30-pixel scales adds a
little); where the ratio exceeds :data:`CORRELATED` (1.5) the noise is correlated and every
pixel's sigma is multiplied by it. On the same simulated spectra Gaussian-smoothed by 2.2
pixels this recovers the true sigma to 0.93 (0.87-1.05); the Andes tables get factors of
17-22.

Sky lines (:func:`estimate_grid_ivar`). A sky emission line raises the noise over a few pixels,
narrower than the window, so a running median of the scatter gives the continuum's noise there;
a model trained on spectra whose ivar drops at every sky line would read the residuals of a real
one as features measured as well as the continuum. On the galclip grid the estimate therefore
takes the *shape* of the variance from DESI's noise model and only its *level* from the
spectrum: V = the per-pixel variance that the simulator's instrument model gives a spectrum of
this (median-smoothed) flux in the dark-time goal exposure (:data:`REFERENCE_EXPTIME_S`; object
and sky Poisson noise and read noise, the sky lines at DESI's resolution), and sigma^2 = c V
with c measured in the running window from the second differences scaled by V
(:func:`_local_der_snr`). The model ships as a small file (:data:`NOISE_MODEL_FILE`, written by
``galclip.sim.instrument.write_noise_model``), so reading needs no simulator. At the sky-line
pixels of real DESI coadds the estimated sigma is then close to the pipeline's instead of
0.6-0.8 of it, and simulated spectra read with an estimated ivar lose less redshift
(benchmarks/RESULTS.md, "Spectra without ivar: the sky lines").

Impossible pixels (:data:`NEGATIVE_SIGMA`). A file without ivar usually comes without a mask
too, so a bad column or a failed sky subtraction stays in the flux. A galaxy's flux is not
negative: a pixel more than 5 estimated sigma below zero (for Gaussian noise p < 3e-7, 0.002 per
7781-pixel spectrum) is not a measurement and gets ivar 0. Emission lines (positive) are never
touched. On simulated spectra read with an estimated ivar this masks ~1 pixel per spectrum (sky-line
residuals, the first pixels of the B arm); on the shared real DESI tables it masks the 20 pixels
of a bad column at 3650-3680 A in one LRG coadd (to -78 x 1e-17 against a continuum of 0.2),
which had made the spectrum read as z 0.06 (benchmarks/RESULTS.md, "Impossible pixels").

What it cannot do: the sky's brightness (moon, twilight) and the exposure time are not known,
so the lines are weighted as in a dark-time exposure; and noise correlated over more than a few
pixels is underestimated by the block check. The
benchmark ``benchmarks/noise_estimate.py`` compares the estimate with the pipeline ivar of real
DESI coadds and with simulated spectra of known noise.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from galclip import conventions as C

#: running-median window of the local noise estimate, pixels (0.8 A each)
WINDOW = 101
#: DER_SNR's constant: 1 / (0.6745 sqrt(6)), the median of |N(0, 6 sigma^2)| in units of sigma
DER_SNR_SCALE = 1.482602 / np.sqrt(6.0)
#: first grid pixel of each segment with its own noise on the DESI grid: the B arm, the B/R
#: overlap (5760-5800 A), the R arm, the R/Z overlap (7520-7620 A), the Z arm
DESI_SEGMENTS = tuple(int(round((w - C.WAVE_MIN) / C.WAVE_STEP))
                      for w in (3600.0, 5760.0, 5800.8, 7520.0, 7620.8))
#: segments shorter than this many good pixels borrow the noise of the whole spectrum
MIN_SEGMENT = 11
#: pixels averaged per block in the check for correlated (smoothed) noise
BLOCK = 8
#: block / pixel noise ratio above which the noise counts as correlated (white: 1.0-1.2)
CORRELATED = 1.5
#: DESI's noise model on the galclip grid (dark sky per fibre, electrons per unit flux per
#: second, read noise), from the simulator's instrument model (``write_noise_model``)
NOISE_MODEL_FILE = Path(__file__).with_name("desi_noise_model.npz")
#: exposure the sky-line shape assumes: DESI's dark-time goal effective time, seconds
REFERENCE_EXPTIME_S = 1000.0
#: pixels of the running median that gives the object's flux for the model variance
OBJECT_SMOOTHING = 51
#: a pixel whose flux is more than this many estimated sigma below zero is a bad pixel (ivar 0)
NEGATIVE_SIGMA = 5.0


def estimate_sigma(flux: np.ndarray, good: np.ndarray | None = None, *,
                   starts: tuple[int, ...] = (0,), window: int = WINDOW,
                   model: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel noise sigma of a 1-D spectrum, same units as ``flux``; NaN where not ``good``.

    ``good`` (bool, default: finite flux) marks the pixels to use; ``starts`` are the first
    pixels of segments estimated separately (e.g. :data:`DESI_SEGMENTS`). ``model`` (optional,
    same shape, > 0): a variance known up to a factor that varies slowly (a noise model); the
    estimate is then that variance times a factor measured in the running window.
    """
    flux = np.asarray(flux, np.float64)
    good = np.isfinite(flux) if good is None else (np.asarray(good, bool) & np.isfinite(flux))
    model = np.ones_like(flux) if model is None else np.asarray(model, np.float64)
    sigma = np.full(flux.shape, np.nan)
    bounds = [*sorted(set(starts) | {0}), len(flux)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        idx = lo + np.flatnonzero(good[lo:hi])
        if len(idx) >= MIN_SEGMENT:
            sigma[idx] = _local_der_snr(flux[idx], window, model[idx])
    left = good & ~np.isfinite(sigma)
    if left.any() and np.isfinite(sigma).any():   # a short segment: the spectrum's median noise
        sigma[left] = np.nanmedian(sigma)
    elif left.any() and left.sum() >= 5:
        sigma[left] = _local_der_snr(flux[left], window, model[left])
    factor = correlation_factor(flux, good, starts=starts)
    return sigma * factor if factor > CORRELATED else sigma


def correlation_factor(flux: np.ndarray, good: np.ndarray | None = None, *,
                       starts: tuple[int, ...] = (0,), block: int = BLOCK) -> float:
    """DER_SNR of ``block``-pixel means x sqrt(block) over the pixel DER_SNR (medians over every
    segment's good pixels): ~1 for independent noise, >> 1 for a smoothed spectrum; 1.0 when
    the spectrum is too short to tell."""
    flux = np.asarray(flux, np.float64)
    good = np.isfinite(flux) if good is None else (np.asarray(good, bool) & np.isfinite(flux))
    pix, blk = [], []
    bounds = [*sorted(set(starts) | {0}), len(flux)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        x = flux[lo:hi][good[lo:hi]]
        if len(x) < 5 * block:
            continue
        pix.append(np.abs(2.0 * x[2:-2] - x[:-4] - x[4:]))
        b = x[: len(x) // block * block].reshape(-1, block).mean(1)
        blk.append(np.abs(2.0 * b[2:-2] - b[:-4] - b[4:]))
    if not pix:
        return 1.0
    p = float(np.median(np.concatenate(pix)))
    q = float(np.median(np.concatenate(blk))) * np.sqrt(block)
    return q / p if p > 0 else 1.0


def _local_der_snr(f: np.ndarray, window: int, v: np.ndarray) -> np.ndarray:
    """DER_SNR sigma of each pixel of a gap-free run of good pixels, in a running window, given
    the relative variance ``v`` of each pixel: d_j = |2 f_j - f_{j-2} - f_{j+2}| has variance
    c (4 v_j + v_{j-2} + v_{j+2}), so d_j / sqrt((4 v_j + ...) / 6) measures sqrt(c) wherever
    the model's variance changes (a sky line), and sigma_j = sqrt(c v_j)."""
    from scipy.ndimage import median_filter

    d = np.abs(2.0 * f[2:-2] - f[:-4] - f[4:])        # (n - 4,)
    u = np.sqrt((4.0 * v[2:-2] + v[:-4] + v[4:]) / 6.0)
    d = np.concatenate([d[:2] / np.sqrt(v[:2]), d / u, d[-2:] / np.sqrt(v[-2:])]) if len(d) \
        else np.abs(f - np.median(f)) / np.sqrt(v)
    w = int(min(window, len(d) - (len(d) + 1) % 2))   # odd, at most the run's length
    return DER_SNR_SCALE * median_filter(d, size=max(w, 1), mode="nearest") * np.sqrt(v)


def estimate_ivar(flux: np.ndarray, good: np.ndarray | None = None, *,
                  starts: tuple[int, ...] = (0,), window: int = WINDOW,
                  model: np.ndarray | None = None) -> np.ndarray:
    """Estimated inverse variance (1 / sigma^2) of a spectrum, 0 where not ``good``, where the
    flux has no scatter at all (a constant run is filled data, not a measurement) and where the
    flux lies more than :data:`NEGATIVE_SIGMA` sigma below zero (a bad pixel: a galaxy's flux is
    not negative)."""
    sigma = estimate_sigma(flux, good, starts=starts, window=window, model=model)
    ok = np.isfinite(sigma) & (sigma > 0)
    with np.errstate(invalid="ignore"):    # NaN sigma or flux: not ok already
        ok &= ~(np.asarray(flux, np.float64) < -NEGATIVE_SIGMA * sigma)
    return np.where(ok, 1.0 / np.where(ok, sigma, 1.0) ** 2, 0.0)


def estimate_grid_ivar(flux: np.ndarray, good: np.ndarray | None = None) -> np.ndarray:
    """:func:`estimate_ivar` of a spectrum on the galclip grid (7781,), arm by arm, with DESI's
    noise model (:func:`model_variance` of the median-smoothed flux) as the variance's shape."""
    from scipy.ndimage import median_filter

    flux = np.asarray(flux, np.float64)
    if flux.shape != (C.N_WAVE,):
        raise ValueError(f"a spectrum on the galclip grid has {C.N_WAVE} pixels, got {flux.shape}")
    good = np.isfinite(flux) if good is None else (np.asarray(good, bool) & np.isfinite(flux))
    smooth = median_filter(np.where(good, flux, 0.0), size=OBJECT_SMOOTHING, mode="nearest")
    return estimate_ivar(flux, good, starts=DESI_SEGMENTS, model=model_variance(smooth))


@lru_cache(maxsize=1)
def _noise_model() -> dict[str, np.ndarray]:
    with np.load(NOISE_MODEL_FILE) as z:
        return {k: np.asarray(z[k], np.float64) for k in z.files}


def model_variance(flux: np.ndarray, exptime_s: float = REFERENCE_EXPTIME_S) -> np.ndarray:
    """Per-pixel variance (7781,) that DESI's noise model gives a spectrum of expected flux
    ``flux`` (galclip grid and units) in ``exptime_s`` at dark sky: object and sky Poisson noise
    plus read noise (``galclip.sim.instrument.spectrum_variance``)."""
    m = _noise_model()
    k = m["counts_per_flux_per_s"] * exptime_s
    reads = max(1.0, float(np.ceil(exptime_s / float(m["seconds_per_read"]))))
    return ((np.clip(flux, 0.0, None) + m["sky"]) * k + m["read_noise_e2"] * reads) / k**2
