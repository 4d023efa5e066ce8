"""Legacy-Survey-like g, r, z cutouts and DESI fibre fractions rendered with GalSim.

A galaxy is a Sersic bulge plus an inclined exponential disc (GalSim ``InclinedExponential``,
scale height 0.1 of the scale length), each with its own g, r, z fluxes from its own SED, so
bulges are redder than discs. Discs may carry logarithmic spiral arms (m arms, pitch angle,
Seigar & James 1998 parametrisation) and a bar (an elongated n = 0.5 Sersic), both in the disc
plane and projected with the disc. Mergers get a tidally sheared companion. Faint
neighbouring galaxies and stars are scattered over the stamp. Everything is convolved with a
per-band Moffat PSF (beta = 3.5) and the pixel, then sky and source noise are added at Legacy
Survey DR9 depths (``instrument.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from galclip import conventions as C
from galclip.sim import instrument as I
from galclip.sim.population import Galaxy

#: Effective gain of a DR9 coadd (electrons per nanomaggy) for source shot noise: DECam
#: zero-points (g 25.1, r 25.3, z 24.9 mag for 1 e-/s) times a typical ~3 x 90 s of exposure.
COADD_GAIN = {"g": 2800.0, "r": 3300.0, "z": 2300.0}


@lru_cache(maxsize=1)
def gsparams():
    """GalSim accuracy settings: 1 % folding (default 0.5 %) keeps FFTs small; the error is
    far below the noise of a survey cutout."""
    import galsim

    return galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)


@dataclass
class Observing:
    """Per-galaxy observing conditions for the image and the spectrum."""

    fwhm: dict[str, float]      # imaging PSF FWHM per band, arcsec
    depth: dict[str, float]     # 5-sigma point-source depth per band, AB mag
    fiber_fwhm: float           # seeing during the spectroscopic exposure, arcsec
    exposure: I.Exposure


def draw_observing(rng: np.random.Generator, programme: str = "bgs_bright",
                   deep_fraction: float = 0.0) -> Observing:
    """Imaging seeing ~ 1.0-1.6 arcsec (Legacy Survey DR9 range); the spectroscopic exposure and
    its seeing from a real DESI tile of the galaxy's programme, a share ``deep_fraction`` of
    them deeper (``observing.py``)."""
    from galclip.sim.observing import draw_conditions

    r_fwhm = rng.uniform(1.0, 1.6)
    fwhm = {"g": r_fwhm * 1.06 * rng.normal(1, 0.04), "r": r_fwhm,
            "z": r_fwhm * 0.93 * rng.normal(1, 0.04)}
    depth = {b: I.DR9_PSF_DEPTH[b] + I.DR9_DEPTH_SCATTER * rng.normal() for b in C.BANDS}
    exp, seeing = draw_conditions(rng, programme, deep_fraction)
    return Observing(fwhm=fwhm, depth=depth, fiber_fwhm=seeing, exposure=exp)


def _spiral_arms(g: Galaxy, rng: np.random.Generator):
    """Face-on spiral-arm light (unit flux) as a GalSim InterpolatedImage in the disc plane."""
    import galsim

    h = g.r_half_disc / 1.678  # exponential scale length, arcsec
    m = max(int(g.morph["morph_spiral_arms"]), 1)
    step = max(h / 8.0, C.PIXEL_SCALE_ARCSEC / 2)
    n = int(2 * np.ceil(5 * h / step)) + 1
    y, x = (np.mgrid[:n, :n] - n // 2) * step
    r = np.hypot(x, y) + 1e-6
    theta = np.arctan2(y, x)
    pitch = np.radians(g.features["arm_pitch_deg"])
    phase = m * (theta - np.log(r / h) / np.tan(pitch)) - g.features["arm_phase"]
    arm = ((1 + np.cos(phase)) / 2) ** 3
    arm *= np.exp(-r / h) * (1 - np.exp(-((r / (0.7 * h)) ** 2)))  # arms fade into the bulge
    arm *= 1 + 0.3 * rng.normal(size=arm.shape).clip(-2, 2)  # clumpy star-forming regions
    arm = np.clip(arm, 0, None)
    return galsim.InterpolatedImage(galsim.Image(arm / arm.sum(), scale=step), flux=1.0)


def galaxy_components(g: Galaxy, rng: np.random.Generator):
    """(bulge, disc, companion) GalSim profiles with unit flux, projected on the sky."""
    import galsim

    pa = galsim.Angle(g.position_angle, galsim.degrees)
    bulge, smooth = _smooth_components(g)
    parts, weights = [smooth], [1.0 - g.features["arm_fraction"] - g.features["bar_fraction"]]
    cos_i = np.cos(np.radians(g.inclination_deg))
    # projecting onto the sky with GalSim's transform keeps surface brightness, so it scales the
    # flux by cos i: withFlux(1) restores the unit flux the weights assume
    if g.features["arm_fraction"] > 0:
        parts.append(_spiral_arms(g, rng).transform(1, 0, 0, cos_i).withFlux(1.0))
        weights.append(g.features["arm_fraction"])
    if g.features["bar_fraction"] > 0:
        bar = galsim.Sersic(n=0.5, half_light_radius=g.features["bar_length"] / 2, flux=1.0)
        bar = bar.shear(q=0.3, beta=galsim.Angle(g.features["bar_angle"], galsim.degrees))
        parts.append(bar.transform(1, 0, 0, cos_i).withFlux(1.0))
        weights.append(g.features["bar_fraction"])
    disc = galsim.Add([p * w for p, w in zip(parts, weights, strict=True)]).rotate(pa)
    companion = None
    if g.features["companion_mass_ratio"] > 0:
        sep, ang = g.features["companion_sep"], g.features["companion_angle"]
        companion = galsim.Sersic(n=1.5, half_light_radius=max(0.5, 0.7 * g.r_half_disc), flux=1.0)
        companion = companion.shear(g1=g.features["companion_shear"], g2=0.0).rotate(
            galsim.Angle(ang, galsim.radians)).shift(sep * np.cos(ang), sep * np.sin(ang))
    return bulge, disc, companion


def _smooth_components(g: Galaxy):
    """The unit-flux bulge (on the sky) and smooth disc (before rotation by the position
    angle): a Sersic profile and an inclined exponential."""
    return (bulge_profile(g.sersic_bulge, g.r_half_bulge, g.q_bulge, g.position_angle),
            disc_profile(g.r_half_disc, g.inclination_deg))


def bulge_profile(n: float, r_half: float, q: float, pa_deg: float):
    """A unit-flux Sersic bulge of half-light radius ``r_half`` (arcsec), axis ratio ``q``."""
    import galsim

    # Sersic profiles are truncated at 8 half-light radii: real bulges end, and an untruncated
    # n = 4 profile forces GalSim into huge FFTs for no visible change on a 40" stamp.
    return galsim.Sersic(n=n, half_light_radius=r_half, trunc=8 * r_half, flux=1.0,
                         gsparams=gsparams()).shear(q=q, beta=galsim.Angle(pa_deg, galsim.degrees))


def disc_profile(r_half: float, incl_deg: float):
    """A unit-flux inclined exponential disc (face-on half-light radius ``r_half``, arcsec)."""
    import galsim

    incl = galsim.Angle(incl_deg, galsim.degrees)
    return galsim.InclinedExponential(incl, scale_radius=r_half / 1.678, scale_h_over_r=0.1,
                                      flux=1.0, gsparams=gsparams())


def legacy_fibre_fractions(g: Galaxy) -> dict[str, float]:
    """Fractions of the bulge's and the disc's light that Legacy Survey DR9 reports as
    FIBERFLUX: within a 1.5" diameter in 1" FWHM Gaussian seeing (Dey et al. 2019). The disc
    is its smooth exponential (arms and bar only redistribute a fraction of its light)."""
    bulge, disc = _smooth_components(g)
    return {"bulge": legacy_fibre_fraction(bulge), "disc": legacy_fibre_fraction(disc)}


def legacy_fibre_fraction(profile) -> float:
    """The Legacy Survey FIBERFLUX fraction of one unit-flux GalSim profile."""
    import galsim

    return fiber_fractions({"p": profile}, 1.0,
                           psf=galsim.Gaussian(fwhm=1.0, gsparams=gsparams()))["p"]


def _contaminants(rng: np.random.Generator):
    """Faint neighbouring galaxies and stars: (profile, {band: flux}) pairs, flux in nanomaggies."""
    import galsim

    half = C.IMAGE_SIZE * C.PIXEL_SCALE_ARCSEC / 2
    out = []
    for kind, rate in (("galaxy", 0.8), ("star", 0.35)):
        for _ in range(rng.poisson(rate)):
            x, y = rng.uniform(-half + 3.0, half - 3.0, 2)  # PSF wings stay on the stamp
            if np.hypot(x, y) < 4.0:
                continue
            if kind == "galaxy":
                r = rng.uniform(20.5, 24.0)
                gr, rz = rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.2)
                prof = galsim.Exponential(half_light_radius=rng.uniform(0.3, 1.5)).shear(
                    q=rng.uniform(0.3, 1), beta=rng.uniform(0, np.pi) * galsim.radians)
            else:
                r = rng.uniform(16.5, 23.0)
                gr = rng.uniform(0.3, 1.4)
                rz = 0.2 + 0.55 * gr + 0.1 * rng.normal()
                prof = galsim.DeltaFunction()
            mags = {"g": r + gr, "r": r, "z": r - rz}
            out.append((prof.shift(x, y), {b: float(C.mag_to_nanomaggy(m)) for b, m in mags.items()}))
    return out


def render_cutout(g: Galaxy, fluxes: dict[str, dict[str, float]], obs: Observing,
                  rng: np.random.Generator, components=None) -> dict[str, np.ndarray]:
    """Noisy and noiseless (3, 152, 152) cutouts in nanomaggies, and the per-pixel ivar.

    ``fluxes`` maps 'bulge', 'disc' (and 'companion') to {band: total flux in nanomaggies}.
    """
    import galsim

    bulge, disc, companion = components or galaxy_components(g, rng)
    extras = _contaminants(rng)
    noiseless = np.zeros(C.IMAGE_SHAPE, dtype=np.float64)
    for k, band in enumerate(C.BANDS):
        objs = [bulge * fluxes["bulge"][band], disc * fluxes["disc"][band]]
        if companion is not None:
            objs.append(companion * fluxes["companion"][band])
        objs += [p * f[band] for p, f in extras]
        psf = galsim.Moffat(beta=I.MOFFAT_BETA, fwhm=obs.fwhm[band], gsparams=gsparams())
        img = galsim.Convolve(galsim.Add(objs), psf).drawImage(
            nx=C.IMAGE_SIZE, ny=C.IMAGE_SIZE, scale=C.PIXEL_SCALE_ARCSEC, method="auto")
        noiseless[k] = img.array
    sky_sigma = np.array([I.pixel_sigma_nanomaggy(obs.depth[b], obs.fwhm[b]) for b in C.BANDS])
    gain = np.array([COADD_GAIN[b] for b in C.BANDS])
    var = sky_sigma[:, None, None] ** 2 + np.clip(noiseless, 0, None) / gain[:, None, None]
    image = noiseless + rng.normal(size=noiseless.shape) * np.sqrt(var)
    contaminant_flux = np.array([sum(f[b] for _, f in extras) for b in C.BANDS])
    return {"image": image.astype(np.float32), "noiseless": noiseless.astype(np.float32),
            "ivar": (1.0 / var).astype(np.float32), "sky_sigma": sky_sigma,
            "contaminant_flux": contaminant_flux, "n_contaminants": len(extras)}


#: Side (px) of the galaxy-model stamp, centred on the cutout's centre: the fit's weights
#: P^2 ivar outside it are negligible (on 40 simulated galaxies, sum P^2 over the central 96 px
#: was within 0.03 % of that over the whole 152 px stamp, and 64 px within 0.16 %), and drawing
#: it costs half of a full stamp.
MODEL_STAMP = 96


def galaxy_model(components, fluxes: dict[str, dict[str, float]], obs: Observing,
                 size: int = MODEL_STAMP) -> np.ndarray:
    """The noiseless (3, size, size) centre of the galaxy's cutout with the galaxy alone (bulge
    + disc, no companion, no neighbours), PSF-convolved and pixelised as in
    :func:`render_cutout`, in nanomaggies: the model a catalogue fit of its flux would scale."""
    import galsim

    bulge, disc = components[0], components[1]
    model = np.zeros((len(C.BANDS), size, size), dtype=np.float64)
    for k, band in enumerate(C.BANDS):
        psf = galsim.Moffat(beta=I.MOFFAT_BETA, fwhm=obs.fwhm[band], gsparams=gsparams())
        obj = galsim.Add([bulge * fluxes["bulge"][band], disc * fluxes["disc"][band]])
        model[k] = galsim.Convolve(obj, psf).drawImage(
            nx=size, ny=size, scale=C.PIXEL_SCALE_ARCSEC, method="auto").array
    return model


def central(a: np.ndarray, size: int) -> np.ndarray:
    """The central (..., size, size) pixels of (..., H, W) images (H - size even)."""
    h, w = a.shape[-2:]
    if (h - size) % 2 or (w - size) % 2 or size > min(h, w):
        raise ValueError(f"cannot centre a {size} px stamp on a {h} x {w} image")
    y, x = (h - size) // 2, (w - size) // 2
    return a[..., y:y + size, x:x + size]


def model_flux_ivar(model: np.ndarray, total: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    """Inverse variance (nanomaggy^-2) per band of the flux fitted with a known profile.

    ``model`` (3, n, n) is the galaxy's noiseless image, ``total`` (3,) its total flux, ``ivar``
    (3, H, W) the pixels' inverse variance on the same centre (H >= n; its central n x n pixels
    are used). The profile P = model / total has unit total flux (the light off the stamp is
    lost to the fit, as it is to a real one). The weighted least-squares flux
    F = sum(P d ivar) / sum(P^2 ivar) of data d = F P + noise is unbiased with variance
    1 / sum(P^2 ivar), the Cramer-Rao bound for Gaussian pixel noise; it is how the Tractor
    computes FLUX_IVAR (Lang et al. 2016) with the shape held at its best fit.
    """
    profile = model / np.asarray(total, dtype=np.float64)[:, None, None]   # (3, n, n)
    return np.sum(profile**2 * central(ivar, model.shape[-1]), axis=(1, 2))


_APERTURE_CACHE: dict[tuple[int, float], np.ndarray] = {}


def _aperture_weights(n: int, scale: float, radius: float, sub: int = 5) -> np.ndarray:
    """Fraction of each pixel of an n x n stamp that lies inside a centred circle."""
    key = (n, scale)
    if key not in _APERTURE_CACHE:
        f = (np.arange(n * sub) - n * sub / 2 + 0.5) / sub * scale
        inside = (np.hypot(*np.meshgrid(f, f)) <= radius).astype(np.float64)
        _APERTURE_CACHE[key] = inside.reshape(n, sub, n, sub).mean(axis=(1, 3))
    return _APERTURE_CACHE[key]


@lru_cache(maxsize=512)
def _point_source_fraction(fwhm_centi: int) -> float:
    import galsim

    psf = galsim.Moffat(beta=I.MOFFAT_BETA, fwhm=fwhm_centi / 100.0, gsparams=gsparams())
    n, scale = 9, 0.25
    img = psf.drawImage(nx=n, ny=n, scale=scale, method="no_pixel")
    return float(np.sum(img.array * _aperture_weights(n, scale, C.FIBER_DIAMETER_ARCSEC / 2)))


def point_source_fiber_fraction(fiber_fwhm: float) -> float:
    """Fraction of a point source's light inside the fibre at this seeing (to 0.01 arcsec):
    the pipeline's PSF_TO_FIBER_SPECFLUX, by which it divides every fibre's flux."""
    return _point_source_fraction(int(round(fiber_fwhm * 100)))


def fiber_fractions(profiles: dict, fiber_fwhm: float, psf=None) -> dict[str, float]:
    """Fraction of each unit-flux profile's light inside the 1.5 arcsec DESI fibre, after
    convolution with the seeing during the spectroscopic exposure (Moffat, beta = 3.5, unless
    another GalSim ``psf`` is given)."""
    import galsim

    if psf is None:
        psf = galsim.Moffat(beta=I.MOFFAT_BETA, fwhm=fiber_fwhm, gsparams=gsparams())
    n, scale = 9, 0.25  # 2.25" stamp sampled at 0.25": about 1 % accuracy on the fraction
    w = _aperture_weights(n, scale, C.FIBER_DIAMETER_ARCSEC / 2)
    out = {}
    for name, prof in profiles.items():
        img = galsim.Convolve(prof, psf).drawImage(nx=n, ny=n, scale=scale, method="no_pixel")
        out[name] = float(np.sum(img.array * w))
    return out
