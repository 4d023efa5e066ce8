"""A classical template-fit redshift, no machine learning: the reference a learned spectrum
encoder should approach on simulated data.

Three bagpipes templates (old; intermediate and young with nebular lines) plus a quadratic
continuum are fitted by weighted linear least squares at every trial redshift and the χ²
minimum is taken — redrock-like pipelines in miniature (Bailey et al. 2023, redrock). The
search is coarse to fine: a grid of step 0.0005 in ln(1 + z) over 0.005 < z < 0.65 (or up to
the highest redshift of the data, for LRGs and ELGs; at most 0.0013 in z at z = 1.6), then a
0.0001 grid within ±0.001 of the coarse minimum. Needs the simulator stack (``pip install galclip[sim]``).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from galclip import conventions as C

Z_MIN, Z_MAX, COARSE, FINE, HALF_WINDOW = 0.005, 0.65, 0.0005, 0.0001, 0.001


class TemplateFitter:
    """Template spectra on the galclip grid, made once per trial redshift on demand; trial
    redshifts span [z_min, z_max)."""

    def __init__(self, z_min: float = Z_MIN, z_max: float = Z_MAX):
        self.z_min, self.z_max = z_min, z_max
        from galclip.sim.sed import Population, SEDEngine

        self._eng = SEDEngine()
        self._pops = [Population(10.0, 0.5, 10.0, 1.0, 0.1, 200.0),
                      Population(5.0, 3.0, 10.0, 0.6, 0.4, 100.0, logu=-3.3, gas_metallicity=0.6),
                      Population(1.5, 20.0, 10.0, 0.3, 0.3, 60.0, logu=-2.8, gas_metallicity=0.3)]
        self._rest = []  # (rest wavelength, rest flux, veldisp) per template
        for pop in self._pops:
            self._eng.synthesize(pop, 0.1)
            m = self._eng._models[(pop.logu is not None, True)]
            self._rest.append((np.array(m.wavelengths), np.array(m.spectrum_full), pop.veldisp))
        x = np.linspace(-1, 1, C.N_WAVE)
        self._poly = np.stack([np.ones_like(x), x, x**2])  # (3, 7781)
        self._cache: dict[float, np.ndarray] = {}
        self._coarse: np.ndarray | None = None  # (Z, 6, 7781) basis on the coarse grid

    def _basis(self, z: float) -> np.ndarray:
        """(6, 7781): the three templates at redshift z (unit median) and the continuum terms."""
        from galclip.sim.sed import observed_spectrum

        key = round(float(z), 6)
        if key not in self._cache:
            rows = []
            for wave, flux, veldisp in self._rest:
                s = observed_spectrum(wave, flux, key, veldisp)
                rows.append(s / np.median(np.abs(s[s != 0])) if np.any(s) else s)
            self._cache[key] = np.concatenate([np.array(rows), self._poly])
        return self._cache[key]

    def basis(self, zs: Iterable[float]) -> np.ndarray:
        """(Z, 6, 7781) float32 basis at each trial redshift."""
        return np.stack([self._basis(z) for z in zs]).astype(np.float32)

    def redshift(self, flux: np.ndarray, ivar: np.ndarray) -> float:
        """The χ²-best redshift, coarse grid then fine grid around its minimum."""
        coarse = np.expm1(np.arange(np.log1p(self.z_min), np.log1p(self.z_max), COARSE))
        if self._coarse is None:
            self._coarse = self.basis(coarse)
        z0 = coarse[int(np.argmin(chi2(self._coarse, flux, ivar)))]
        fine = np.arange(max(self.z_min, z0 - HALF_WINDOW), min(self.z_max, z0 + HALF_WINDOW), FINE)
        return float(fine[int(np.argmin(chi2(self.basis(fine), flux, ivar)))])


def chi2(A: np.ndarray, flux: np.ndarray, ivar: np.ndarray, chunk: int = 64) -> np.ndarray:
    """(Z,) χ² of the best linear combination of the basis A (Z, K, 7781) at each trial z.

    The normal equations are built ``chunk`` trial redshifts at a time, so the weighted basis
    stays in cache instead of a (Z, K, 7781) temporary (2x faster on the coarse grid)."""
    w = np.asarray(ivar, np.float32)
    f = np.asarray(flux, np.float32)
    n_z, k = A.shape[:2]
    ata, atb = np.empty((n_z, k, k)), np.empty((n_z, k))
    for lo in range(0, n_z, chunk):
        a = A[lo:lo + chunk]
        aw = a * w  # (c, K, 7781)
        ata[lo:lo + chunk] = aw @ a.transpose(0, 2, 1)  # (c, K, K)
        atb[lo:lo + chunk] = aw @ f  # (c, K)
    coef = np.linalg.solve(ata + 1e-6 * np.eye(k), atb[..., None])[..., 0]
    return float(np.sum(w.astype(np.float64) * f.astype(np.float64) ** 2)) - np.sum(coef * atb, axis=1)
