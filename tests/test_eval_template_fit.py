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
