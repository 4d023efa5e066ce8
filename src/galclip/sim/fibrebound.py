"""Upper bounds on the Legacy Survey fibre fractions, from tables instead of GalSim.

The target selection reads Legacy Survey FIBERFLUX: the light of the bulge and the smooth
disc within a 1.5" diameter in 1" Gaussian seeing (``imaging.legacy_fibre_fractions``, a GalSim
rendering of each component, ~1.6 ms per galaxy). Most LRG draws bright enough in z fail
z_fib < 21.6, and many BGS Faint draws r_fib < 21.5; the rejection sampler can reject them
before the exact photometry if it has an upper bound on each component's fraction.

The fraction of a centred profile f in a circular aperture after convolution with a Gaussian
PSF is  F = integral f(x) h(|x|) dx,  where h(d) is the PSF light in the aperture when the
PSF is offset by d: h decreases with d (Anderson's theorem for a centred, symmetric, unimodal
kernel). Hence F decreases as the profile is scaled up (x -> s x, s > 1), for any shape, and
increases as a disc is compressed along one axis (seen more inclined). The tables hold
GalSim's own fractions, drawn by the same code as ``legacy_fibre_fractions``, on a grid of
half-light radii (and disc inclinations); a lookup reads the node at the next smaller radius
(and next larger inclination), times ``MARGIN`` for GalSim's numerical noise between nodes.
The bulge table is drawn round (axis ratio 1), the most concentrated shape at a given
half-light radius (the fraction rises with q: 0.672 at q 0.45, 0.688 at q 1 for n = 4,
r_half 0.15"; the position angle changes it by less than 1e-4). tests/test_sim.py checks the
bound against GalSim on random draws.
"""
from __future__ import annotations

import numpy as np

#: Relative margin over the tabulated fractions: GalSim's fractions are monotone in radius and
#: inclination to ~1e-4 (the dense scans in benchmarks/explore/sim_fibre_bound.py).
MARGIN = 1.01
BULGE_SERSIC = (1.5, 2.5, 4.0)          # the bulge Sersic indices the population draws
BULGE_RADII = (0.15, 20.0, 120)         # r_half range (arcsec, population.py) and node count
DISC_RADII = (0.3, 25.0, 100)
DISC_COS_I_NODES = 16                   # inclination nodes, uniform in cos i


def fraction_tables() -> tuple[np.ndarray, ...]:
    """(bulge radii, bulge fractions (n, radius), disc radii, disc inclinations (degrees),
    disc fractions (radius, inclination)) drawn with GalSim (~4 CPU s)."""
    from galclip.sim.imaging import bulge_profile, disc_profile, legacy_fibre_fraction

    rb, rd = np.geomspace(*BULGE_RADII), np.geomspace(*DISC_RADII)
    incl = np.degrees(np.arccos(np.linspace(1.0, 0.0, DISC_COS_I_NODES)))
    bulge = np.array([[legacy_fibre_fraction(bulge_profile(n, r, 1.0, 0.0)) for r in rb]
                      for n in BULGE_SERSIC])
    disc = np.array([[legacy_fibre_fraction(disc_profile(r, i)) for i in incl] for r in rd])
    return rb, bulge, rd, incl, disc


def table_key() -> str:
    """A cache name for :func:`fraction_tables` that changes with GalSim's version and with the
    fractions themselves (a bulge and a disc drawn now): tables drawn by other rendering code
    are never read back."""
    import hashlib
    from importlib.metadata import version

    from galclip.sim.imaging import bulge_profile, disc_profile, legacy_fibre_fraction

    probe = np.array([legacy_fibre_fraction(bulge_profile(4.0, 0.5, 1.0, 0.0)),
                      legacy_fibre_fraction(disc_profile(1.0, 60.0))])
    return (f"legacy-fibre-bound-v1-galsim{version('galsim')}-"
            f"{hashlib.sha256(probe.tobytes()).hexdigest()[:12]}")


class LegacyFibreBound:
    """Upper bounds on ``imaging.legacy_fibre_fractions(g)`` from :func:`fraction_tables`."""

    def __init__(self, rb, bulge, rd, incl, disc):
        self.rb, self.bulge, self.rd, self.incl, self.disc = rb, bulge, rd, incl, disc

    def fractions(self, g) -> dict[str, float]:
        """{'bulge': ..., 'disc': ...}: each at least GalSim's fraction; 1 outside the tables."""
        return {"bulge": self._bulge(g.sersic_bulge, g.r_half_bulge),
                "disc": self._disc(g.r_half_disc, g.inclination_deg)}

    def _bulge(self, n: float, r_half: float) -> float:
        if n not in BULGE_SERSIC or not self.rb[0] <= r_half <= self.rb[-1]:
            return 1.0
        i = int(np.searchsorted(self.rb, r_half, side="right")) - 1
        return min(1.0, MARGIN * float(self.bulge[BULGE_SERSIC.index(n), i]))

    def _disc(self, r_half: float, incl_deg: float) -> float:
        if not (self.rd[0] <= r_half <= self.rd[-1] and 0.0 <= incl_deg <= self.incl[-1]):
            return 1.0
        i = int(np.searchsorted(self.rd, r_half, side="right")) - 1
        j = int(np.searchsorted(self.incl, incl_deg, side="left"))
        return min(1.0, MARGIN * float(self.disc[i, j]))
