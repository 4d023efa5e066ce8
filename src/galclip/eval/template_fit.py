"""A classical template-fit redshift, no machine learning: the reference a learned spectrum
encoder should approach on simulated data.

Three bagpipes templates (old; intermediate and young with nebular lines) plus a quadratic
continuum are fitted by weighted linear least squares at every trial redshift and the χ²
minimum is taken — redrock-like pipelines in miniature (Bailey et al. 2023, redrock). The
search is coarse to fine: a grid of step 0.0005 in ln(1 + z) over 0.005 < z < 0.65 (or up to
the highest redshift of the data, for LRGs and ELGs; at most 0.0013 in z at z = 1.6), then a
0.0001 grid within ±0.001 of the coarse minimum. Needs the simulator stack (``pip install galclip[sim]``).

:func:`simulated_basis` makes the basis of the OOD score's redshift check
(:class:`galclip.search.redshift_templates.LogTemplateFit`): the first principal components of
rest-frame spectra of galaxies drawn by galclip's simulator for its programmes (an uncentred
SVD, as redrock's galaxy templates are a PCA basis: Bolton et al. 2012, AJ 144, 144);
:func:`write_catalog_basis` stores it beside a catalog's index (``galclip index --ood-templates``, the demo).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from galclip import conventions as C
from galclip.search.redshift_templates import DLN, REST_MIN, rest_grid

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


def write_catalog_basis(catalog_dir, n_templates: int = 120, k: int = 10, seed: int = 4242):
    """Store :func:`simulated_basis` beside a catalog's index (the file the OOD score's redshift
    check reads, :data:`galclip.search.redshift_templates.BASIS_FILE`) unless it is there;
    returns its path. Needs galclip[sim]."""
    from galclip.search.redshift_templates import basis_path, write_basis

    path = basis_path(catalog_dir)
    if not path.exists():
        write_basis(path, *simulated_basis(n_templates, k, seed))
    return path
