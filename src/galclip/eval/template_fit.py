"""A classical template-fit redshift, no machine learning: the reference a learned spectrum
encoder should approach on simulated data.

Three bagpipes templates (old; intermediate and young with nebular lines) plus a quadratic
continuum are fitted by weighted linear least squares at every trial redshift and the χ²
minimum is taken — redrock-like pipelines in miniature (Bailey et al. 2023, redrock). The
search is coarse to fine: a grid of step 0.0005 in ln(1 + z) over 0.005 < z < 0.65 (or up to
the highest redshift of the data, for LRGs and ELGs; at most 0.0013 in z at z = 1.6), then a
0.0001 grid within ±0.001 of the coarse minimum. Needs the simulator stack (``pip install galclip[sim]``).

:class:`LogTemplateFit` is the same least-squares fit done for every trial redshift at once, for
callers that fit many spectra (the unfamiliarity check of :mod:`galclip.search.ood`): on a grid
uniform in ln(wavelength) a redshift is a shift, so the normal equations at every trial z are
cross-correlations, one FFT each (the correlation form of template fitting, Tonry & Davis 1979,
AJ 84, 1511). Its basis (:func:`simulated_basis`) is the first principal components of rest-frame
spectra of galaxies drawn by galclip's simulator for its programmes (an uncentred SVD, as
redrock's galaxy templates are a PCA basis: Bolton et al. 2012, AJ 144, 144); only building the
basis needs the simulator stack, fitting with a stored one needs numpy and scipy.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from galclip import conventions as C

Z_MIN, Z_MAX, COARSE, FINE, HALF_WINDOW = 0.005, 0.65, 0.0005, 0.0001, 0.001
#: LogTemplateFit: log-wavelength step = redshift step in ln(1 + z); rest range of its basis;
#: trial redshifts
DLN = 1e-4
REST_MIN, REST_MAX = 1500.0, 9850.0
LOG_Z_MIN, LOG_Z_MAX = 0.003, 1.25


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


def component_rest(engine, pop, z: float, grid: np.ndarray) -> np.ndarray:
    """One stellar component's spectrum at rest vacuum wavelengths ``grid``, broadened by its
    velocity dispersion."""
    from galclip.sim.sed import air_to_vacuum

    m = engine._model(engine._components(pop, z, spectral=True), spectral=True)
    f = np.interp(np.log(grid), np.log(air_to_vacuum(m.wavelengths)), m.spectrum_full)
    sig = max(pop.veldisp / (DLN * 299792.458), 1e-3)                  # pixels
    half = int(np.ceil(5 * sig))
    kern = np.exp(-0.5 * (np.arange(-half, half + 1) / sig) ** 2)
    return np.convolve(f, kern / kern.sum(), mode="same")


def simulated_templates(n: int, seed: int) -> np.ndarray:
    """(n, G) unit-mean rest spectra (bulge + disc) of galaxies the simulator draws for its
    default programmes, on :func:`rest_grid`."""
    from galclip.sim.survey import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(n=n, seed=seed))
    rng = np.random.default_rng(seed)
    grid, out = rest_grid(), []
    for _ in range(n):
        g = sim.draw_target(rng).galaxy
        s = component_rest(sim.engine, g.bulge, g.redshift, grid) + component_rest(
            sim.engine, g.disc, g.redshift, grid)
        out.append(s / s.mean())
    return np.array(out)


def simulated_basis(n_templates: int = 120, k: int = 10, seed: int = 4242
                    ) -> tuple[float, np.ndarray]:
    """(ln lambda of the first rest pixel, (k, G) basis): the first k right singular vectors of
    ``n_templates`` simulated rest spectra (:func:`simulated_templates`). 120 templates and 10
    components read every real DESI BGS and LRG spectrum of ../shared/data/real to < 0.0005 (1 + z)
    (benchmarks/RESULTS.md); about a minute on one CPU core."""
    temps = simulated_templates(n_templates, seed)
    _, _, vt = np.linalg.svd(temps, full_matrices=False)
    return float(np.log(REST_MIN)), vt[:k].astype(np.float32)
