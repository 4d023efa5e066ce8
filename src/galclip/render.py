"""Images and spectra as pictures, for everything that draws them (the simulator's report, the
evaluation report, the explorer): g,r,z colour composites, PNG bytes, spectra binned or smoothed
for a small plot, and the lines to mark on them. Numpy only (Pillow for PNG).

The colour composite maps z, r, g to R, G, B with an arcsinh stretch on the summed intensity
(Lupton et al. 2004, PASP 116, 133), which keeps colours in the bright core while showing the
faint outskirts.
"""
from __future__ import annotations

import io

import numpy as np

from galclip import conventions as C

EMISSION_LINES = C.EMISSION_LINES  # rest-frame vacuum Angstrom
#: per-band divisors (g, r, z): the Legacy Survey viewer multiplies g, r, z by 6.0, 3.4, 2.2
#: before its arcsinh stretch, which renders typical galaxies in natural colours
BAND_SCALE = np.array([1 / 6.0, 1 / 3.4, 1 / 2.2], dtype=np.float32)


def line_list() -> list[dict]:
    """The emission ("em") and absorption ("abs") lines the explorer marks, rest-frame vacuum
    Angstrom, from :mod:`galclip.conventions`."""
    return [{"name": name, "rest": rest, "kind": kind}
            for kind, lines in (("em", C.EMISSION_LINES), ("abs", C.ABSORPTION_LINES))
            for name, rest in lines]


def color_composite(image: np.ndarray, q: float = 8.0, stretch: float = 0.3) -> np.ndarray:
    """(3, H, W) g,r,z nanomaggies -> (H, W, 3) uint8 RGB (R = z, G = r, B = g)."""
    img = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)  # (bands, H, W)
    img = np.clip(img, 0, None) / BAND_SCALE[:, None, None]
    intensity = img.mean(axis=0) + 1e-12  # (H, W)
    scale = np.arcsinh(q * intensity / stretch) / (q * intensity)
    rgb = (img * scale)[::-1].transpose(1, 2, 0)  # (H, W, [z, r, g])
    peak = np.maximum(rgb.max(axis=-1, keepdims=True), 1.0)
    return (np.clip(rgb / peak, 0, 1) * 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray, upscale: int = 1) -> bytes:
    from PIL import Image

    im = Image.fromarray(rgb, mode="RGB")
    if upscale > 1:
        im = im.resize((rgb.shape[1] * upscale, rgb.shape[0] * upscale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def smooth_spectrum(flux: np.ndarray, ivar: np.ndarray, width: int = 9) -> np.ndarray:
    """Inverse-variance weighted running mean over ``width`` pixels (NaN where no good pixel)."""
    w = np.where(np.asarray(ivar) > 0, np.asarray(ivar, np.float64), 0.0)
    kernel = np.ones(width)
    num = np.convolve(np.nan_to_num(np.asarray(flux, np.float64)) * w, kernel, mode="same")
    den = np.convolve(w, kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def spectrum_plot_data(flux: np.ndarray, ivar: np.ndarray, redshift: float | None,
                       n_bins: int = 600) -> dict:
    """A spectrum binned to ``n_bins`` points (inverse-variance weighted) for a small plot,
    with the emission lines that fall in range at the object's redshift."""
    wave = C.wavelength_grid()
    flux, ivar = np.asarray(flux, np.float64), np.asarray(ivar, np.float64)
    ivar = np.where(np.isfinite(flux) & np.isfinite(ivar), ivar, 0.0)
    edges = np.linspace(0, len(wave), n_bins + 1).astype(int)
    w = np.add.reduceat(ivar, edges[:-1])
    fw = np.add.reduceat(np.nan_to_num(flux) * ivar, edges[:-1])
    centre = np.add.reduceat(wave, edges[:-1]) / np.diff(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        binned = np.where(w > 0, fw / w, np.nan)
    lines = []
    if redshift is not None and np.isfinite(redshift):
        for name, rest in EMISSION_LINES:
            obs = rest * (1 + float(redshift))
            if wave[0] <= obs <= wave[-1]:
                lines.append({"name": name, "rest": rest, "observed": round(obs, 1)})
    return {"wavelength": np.round(centre, 1).tolist(),
            "flux": [None if not np.isfinite(v) else round(float(v), 4) for v in binned],
            "unit": C.SPECTRUM_UNIT, "redshift": None if redshift is None else float(redshift),
            "lines": lines}
