"""The template-fit redshift reference recovers the redshift of a spectrum made from its own
templates (needs the simulator stack)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_template_fit_recovers_the_redshift_of_a_template_spectrum():
    pytest.importorskip("bagpipes")
    from galclip.eval.template_fit import TemplateFitter, chi2

    fitter = TemplateFitter(z_min=0.2, z_max=0.35)  # a narrow grid keeps the test short
    rng = np.random.default_rng(0)
    for z in (0.2217, 0.3127):
        basis = fitter.basis([z])[0]  # (6, 7781)
        flux = 2.0 * basis[2] + 0.5 * basis[0] + 0.3 * basis[3]
        ivar = np.full(flux.shape, 400.0)
        noisy = flux + rng.normal(0, 0.05, flux.shape)
        assert fitter.redshift(noisy, ivar) == pytest.approx(z, abs=2e-4)
    c = chi2(fitter.basis([0.2, 0.3127]), flux, ivar)
    assert c[1] < 1e-3 * c[0]  # the noiseless spectrum is fitted exactly at its own z


@pytest.mark.slow
def test_the_catalog_basis_reads_a_spectrum_made_of_simulated_templates(tmp_path):
    """The basis galclip index --ood-templates writes beside a catalog (galclip's simulated SEDs)
    gives LogTemplateFit the redshift of a noisy mix of its own components; a second call keeps
    the file."""
    pytest.importorskip("bagpipes")
    from galclip import conventions as C
    from galclip.eval.template_fit import write_catalog_basis
    from galclip.search.redshift_templates import LogTemplateFit, basis_path, read_basis

    path = write_catalog_basis(tmp_path, n_templates=12, k=5)
    lnw0, basis = read_basis(path)
    before = path.stat().st_mtime_ns
    assert write_catalog_basis(tmp_path, n_templates=12, k=5) == basis_path(tmp_path)
    assert path.stat().st_mtime_ns == before
    fit = LogTemplateFit(lnw0, basis, 0.05, 0.8)
    rng = np.random.default_rng(0)
    z = float(fit.z[np.argmin(np.abs(fit.z - 0.3127))])             # a trial redshift
    wave = np.exp(lnw0 + 1e-4 * np.arange(basis.shape[1]))          # rest grid
    obs = C.wavelength_grid()
    flux = np.interp(obs / (1 + z), wave, 1.0 * basis[0] + 0.3 * basis[1] - 0.2 * basis[2])
    ivar = np.full(C.N_WAVE, 1e4 / np.var(flux))
    noisy = flux + rng.normal(0, 1 / np.sqrt(ivar[0]), C.N_WAVE)
    assert fit.redshift(noisy, ivar) == pytest.approx(z, abs=3e-4)
