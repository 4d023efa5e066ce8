"""The redshift of a spectrum by χ² template fitting at every trial redshift at once, for the
OOD score's redshift check (:mod:`galclip.search.ood`).

A linear basis of rest-frame templates, sampled uniformly in ln(wavelength), is fitted to a DESI-
grid spectrum by weighted least squares at every trial redshift; on a log-wavelength grid a
redshift is a shift, so the normal equations at all trial z are cross-correlations, one FFT
each (the correlation form of template fitting, Tonry & Davis 1979, AJ 84, 1511; redrock fits
DESI spectra with PCA templates in the same way, Bolton et al. 2012, AJ 144, 144). ~50 ms a
spectrum for a 10-component basis and 8100 trial redshifts. The basis is a file beside a
catalog's index (:data:`BASIS_FILE`), made from galclip's simulated SEDs by
:func:`galclip.eval.template_fit.simulated_basis` (``galclip index --ood-templates``, the demo).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from galclip import conventions as C

#: log-wavelength step = redshift step in ln(1 + z); rest range of a basis; trial redshifts
DLN = 1e-4
REST_MIN, REST_MAX = 1500.0, 9850.0
LOG_Z_MIN, LOG_Z_MAX = 0.003, 1.25
BASIS_FILE = "ood-templates.npz"


class LogTemplateFit:
    """The χ²-best redshift of a linear template basis, every trial redshift at once.

    ``basis`` (K, M) is sampled on the rest grid ln(lambda) = ``rest_lnw0`` + DLN * m. With the
    spectrum resampled to the observed grid ln(lambda) = rest_lnw0 + DLN * (c + i), redshift
    ln(1 + z) = DLN * s puts template pixel m = i + c - s under observed pixel i, so

        M_jk(s) = sum_i w_i B_j(i + c - s) B_k(i + c - s),   b_j(s) = sum_i w_i f_i B_j(i + c - s)

    are cross-correlations of (w, w f) with (B_j B_k, B_j), computed by FFT for all s at once;
    χ²(s) = sum w f^2 - b(s) . M(s)^-1 b(s). Trial redshifts span [z_min, z_max] in steps of DLN
    in ln(1 + z) (1e-4: a tenth of the redshift precision the unfamiliarity check needs).
    """

    def __init__(self, rest_lnw0: float, basis: np.ndarray, z_min: float = LOG_Z_MIN,
                 z_max: float = LOG_Z_MAX):
        from scipy.fft import next_fast_len, rfft

        basis = np.asarray(basis, np.float64)
        k, m = basis.shape                                              # (K, M)
        wave_max = C.WAVE_MIN + C.WAVE_STEP * (C.N_WAVE - 1)
        c = int(np.ceil((np.log(C.WAVE_MIN) - rest_lnw0) / DLN))
        n_obs = int(np.floor((np.log(wave_max) - rest_lnw0) / DLN)) - c + 1
        self.obs_wave = np.exp(rest_lnw0 + DLN * (c + np.arange(n_obs)))    # (N,) Angstrom
        s = np.arange(int(np.ceil(np.log1p(z_min) / DLN)), int(np.floor(np.log1p(z_max) / DLN)) + 1)
        self.z, self._u = np.expm1(s * DLN), c - s                      # (S,) each
        if len(s) == 0 or self._u.min() < 0 or self._u.max() + n_obs > m:
            raise ValueError(f"the template basis (rest {np.exp(rest_lnw0):.0f} Angstrom, {m} "
                             f"pixels) does not cover redshifts {z_min}-{z_max} on the DESI grid")
        self.k, self._n_fft = k, next_fast_len(n_obs + m)
        self._pairs = [(i, j) for i in range(k) for j in range(i, k)]
        self._fb = rfft(basis, self._n_fft, axis=1)                                   # (K, F)
        self._fp = rfft(np.stack([basis[i] * basis[j] for i, j in self._pairs]),      # (P, F)
                        self._n_fft, axis=1)

    def resample(self, flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flux and weight (N,) on the log grid, a pixel next to a bad one weighted 0; the weight
        keeps the total ivar per Angstrom (a log pixel of lambda DLN Angstrom)."""
        wave = C.wavelength_grid()
        good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
        f = np.interp(self.obs_wave, wave, np.where(good, flux, 0.0))
        w = np.interp(self.obs_wave, wave, np.where(good, ivar, 0.0))
        bad = np.interp(self.obs_wave, wave, (~good).astype(np.float64)) > 0
        return f, np.where(bad, 0.0, w * self.obs_wave * DLN / C.WAVE_STEP)

    def chi2(self, flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
        """(S,) χ² of the best linear combination of the basis at each trial redshift."""
        from scipy.fft import irfft, rfft

        f, w = self.resample(np.asarray(flux, np.float64), np.asarray(ivar, np.float64))
        b = irfft(np.conj(rfft(w * f, self._n_fft)) * self._fb, self._n_fft, axis=1)[:, self._u].T
        mp = irfft(np.conj(rfft(w, self._n_fft)) * self._fp, self._n_fft, axis=1)[:, self._u].T
        mm = np.empty((len(self._u), self.k, self.k))                   # (S, K, K)
        for p, (i, j) in enumerate(self._pairs):
            mm[:, i, j] = mm[:, j, i] = mp[:, p]
        ridge = 1e-9 * np.trace(mm, axis1=1, axis2=2)[:, None, None] * np.eye(self.k)
        coef = np.linalg.solve(mm + ridge, b[..., None])[..., 0]        # (S, K)
        return float(np.sum(w * f * f)) - np.sum(coef * b, axis=1)

    def redshift(self, flux: np.ndarray, ivar: np.ndarray) -> float:
        """The trial redshift of least χ²."""
        return float(self.z[int(np.argmin(self.chi2(flux, ivar)))])


def rest_grid() -> np.ndarray:
    """The rest-frame wavelengths (Angstrom) of :func:`simulated_basis`, uniform in ln(lambda)."""
    return np.exp(np.arange(np.log(REST_MIN), np.log(REST_MAX), DLN))


def basis_path(catalog_dir: str | Path) -> Path:
    return Path(catalog_dir) / BASIS_FILE


def write_basis(path: str | Path, rest_lnw0: float, basis: np.ndarray) -> None:
    """Store a basis ((K, M) on the rest grid starting at ln(lambda) = ``rest_lnw0``) atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, lnw0=float(rest_lnw0), basis=np.asarray(basis, np.float32))
    os.replace(tmp, path)


def read_basis(path: str | Path) -> tuple[float, np.ndarray]:
    """(rest_lnw0, (K, M) float32 basis) of a stored basis."""
    with np.load(path) as z:
        return float(z["lnw0"]), np.asarray(z["basis"], np.float32)
