"""The simulated spectra's instrument effects beside real DESI spectra (``galclip simulate --report``).

Real data: the pipeline coadds in ``shared/data/real/desi`` (target fibres with IVAR, MASK,
FIBERMAP photometry and SCORES), the 15 BGS/LRG/ELG galaxies of the Andes tables in
``desi-andes`` (flux and Legacy Survey photometry, no ivar), and the main-survey reference tiles
that ``desispec`` ships (``observing.tile_conditions``). One statistic per effect, computed the
same way on both sides:

- exposure: effective time over the programme's goal;
- noise per pixel against the sky flux: sigma^2 x effective time x PSF_TO_FIBER^2 per pixel in
  bins of the dark-sky flux in the fibre (sky-limited noise depends on nothing else);
- sky-subtraction residual: the excess scatter, beyond the ivar, at the brightest sky lines as
  a fraction of their (calibrated) flux, per spectrum;
- spectrophotometric calibration: synthetic g - r and r - z of the spectrum minus the imaging
  colours, for galaxies brighter than 22.5 in both bands (a calibration tilt moves them;
  aperture colour gradients and noise add scatter);
- fibre loss: synthetic r flux of the spectrum over the total r flux (fibre light, seeing and
  the point-source calibration together), the real BGS galaxies also apart;
- masking: fraction of unmasked spectra's pixels with ivar 0.
A real coadd's effective time is EFFTIME_DARK = TSNR2_LRG x the median EFFTIME_SPEC / TSNR2_LRG
of the dark reference exposures (12.2 s; desispec's tsnr2_to_efftime).
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from galclip import conventions as C

COADDS = ("coadd-sv3-dark-26065.fits", "coadd-5-169-thru20210419.fits",
          "coadd-4-80613-thru20210324.fits", "coadd-special-dark-27247.fits")
ANDES = ("bgs-66003", "lrg-68002", "elg-67230")
BRIGHT_LINE = 30.0     # dark-sky line flux in the fibre (1e-17 erg/s/cm^2/A) of "bright" lines
SKY_BINS = np.array([0.5, 1.0, 2.0, 5.0, 15.0, 50.0, 300.0])
PHOT_BANDS = ("g", "r", "z")
MIN_PHOT_FLUX = 1.0    # nanomaggies (22.5 mag) in both bands of a colour


# ----------------------------------------------------------------------------- statistics
@lru_cache(maxsize=1)
def _filters() -> dict[str, np.ndarray]:
    import speclite.filters

    wave = C.wavelength_grid()
    out = {}
    for b in PHOT_BANDS:
        f = speclite.filters.load_filter(f"decam2014-{b}")
        out[b] = np.interp(wave, f.wavelength, f.response, left=0.0, right=0.0)
    return out


def synthetic_nanomaggies(flux: np.ndarray, ivar: np.ndarray) -> dict[str, np.ndarray]:
    """Synthetic DECam g, r, z fluxes (nanomaggies) of spectra (N, 7781) in 1e-17 units, masked
    pixels interpolated; the z band is cut at 9824 A on both sides of every comparison."""
    wave = C.wavelength_grid()
    flux = np.atleast_2d(np.asarray(flux, np.float64)).copy()
    good = np.atleast_2d(ivar) > 0
    for i in range(len(flux)):
        if good[i].any() and not good[i].all():
            flux[i, ~good[i]] = np.interp(wave[~good[i]], wave[good[i]], flux[i, good[i]])
    fnu_ab = 3631e-23 * 2.99792458e18 / wave**2 / C.FLUX_UNIT_CGS  # 1 maggy in 1e-17 f_lambda
    return {b: 1e9 * (flux @ (r * wave)) / np.sum(fnu_ab * r * wave) for b, r in _filters().items()}


def colour_offsets(flux, ivar, phot: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Spectrum minus imaging colour, (g - r) and (r - z), in magnitudes; NaN unless both
    imaging fluxes exceed ``MIN_PHOT_FLUX`` (fainter spectra measure noise, not calibration)."""
    syn = synthetic_nanomaggies(flux, ivar)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for a, b in (("g", "r"), ("r", "z")):
            d = -2.5 * np.log10(syn[a] / syn[b]) + 2.5 * np.log10(phot[a] / phot[b])
            bright = (np.asarray(phot[a]) > MIN_PHOT_FLUX) & (np.asarray(phot[b]) > MIN_PHOT_FLUX)
            out[f"{a}-{b}"] = np.where(bright, d, np.nan)
    return out


def sky_residual_fraction(flux: np.ndarray, ivar: np.ndarray, line_flux: np.ndarray) -> np.ndarray:
    """Per spectrum: sqrt(robust variance - noise variance) / line flux at the bright sky-line
    pixels (0 where the scatter is within the noise). ``line_flux`` (N, 7781) is the sky-line
    flux each spectrum carries, in its calibrated units."""
    from scipy.ndimage import median_filter

    from galclip.sim.instrument import FIBER_AREA_ARCSEC2
    from galclip.sim.observing import sky_lines

    bright = sky_lines() * FIBER_AREA_ARCSEC2 > BRIGHT_LINE
    out = []
    for f, iv, lf in zip(np.atleast_2d(flux), np.atleast_2d(ivar), np.atleast_2d(line_flux), strict=True):
        resid = f - median_filter(np.asarray(f, np.float64), 41, mode="nearest")
        m = bright & (iv > 0)
        robust = (1.4826 * np.median(np.abs(resid[m]))) ** 2
        excess = robust - np.median(1.0 / iv[m])
        out.append(np.sqrt(max(excess, 0.0)) / np.median(lf[m]))
    return np.array(out)


def noise_vs_sky(ivar: np.ndarray, efftime: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Median sigma^2 x effective time x PSF_TO_FIBER^2 in each ``SKY_BINS`` bin of the
    dark-sky flux in the fibre, pooled over spectra: shape (len(SKY_BINS) - 1,)."""
    from galclip.sim.instrument import FIBER_AREA_ARCSEC2, dark_sky

    sky = dark_sky() * FIBER_AREA_ARCSEC2
    ivar = np.atleast_2d(ivar)
    with np.errstate(divide="ignore"):
        y = np.where(ivar > 0, (np.asarray(efftime) * np.asarray(psf) ** 2)[:, None] / ivar, np.nan)
    idx = np.digitize(sky, SKY_BINS) - 1
    return np.array([np.nanmedian(y[:, idx == k]) if np.isfinite(y[:, idx == k]).any() else np.nan
                     for k in range(len(SKY_BINS) - 1)])


def masked_fraction(ivar: np.ndarray) -> np.ndarray:
    """Per spectrum: fraction of pixels with ivar 0, over spectra that are not wholly masked."""
    ivar = np.atleast_2d(ivar)
    bad = ivar <= 0
    return bad[~bad.all(1)].mean(1)


def quantiles(x, qs=(10, 50, 90)) -> list[float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return [float(np.percentile(x, q)) for q in qs] if len(x) else [np.nan] * len(qs)


# ----------------------------------------------------------------------------- real data
@lru_cache(maxsize=1)
def lrg_snr2time() -> float:
    """Median EFFTIME_SPEC / TSNR2_LRG of desispec's dark main-survey reference exposures."""
    import importlib.resources as ir

    from galclip.sim.observing import REFSET

    with open(ir.files("desispec") / REFSET, newline="") as fh:
        r = [float(x["EFFTIME_SPEC"]) / float(x["TSNR2_LRG"]) for x in csv.DictReader(fh)
             if x["FAPRGRM"] == "dark" and float(x["TSNR2_LRG"]) > 0]
    return float(np.median(r))


def real_coadd_targets(real_dir: Path) -> dict[str, np.ndarray]:
    """Target fibres of the pipeline coadds with a valid ivar: flux, ivar (N, 7781), effective
    time, PSF_TO_FIBER, imaging fluxes (NaN when absent), masked fraction, names."""
    from astropy.io import fits

    from galclip.data.desi import merge_arms

    rows: dict[str, list] = {k: [] for k in ("flux", "ivar", "efftime", "psf", "name", "shape_r",
                                             "fiber_r", *[f"flux_{b}" for b in PHOT_BANDS])}
    for name in COADDS:
        with fits.open(real_dir / "desi" / name) as h:
            fm, sc = h["FIBERMAP"].data, h["SCORES"].data
            arms = [(np.rint((h[f"{a}_WAVELENGTH"].data - C.WAVE_MIN) / C.WAVE_STEP).astype(int),
                     h[f"{a}_FLUX"].data.astype(float), h[f"{a}_IVAR"].data.astype(float),
                     h[f"{a}_MASK"].data == 0) for a in "BRZ"]
            flux, ivar = merge_arms(arms)
            for i in np.flatnonzero((fm["OBJTYPE"] == "TGT") & (ivar > 0).any(1)):
                rows["flux"].append(flux[i])
                rows["ivar"].append(ivar[i])
                rows["efftime"].append(float(sc["TSNR2_LRG"][i]) * lrg_snr2time())
                rows["psf"].append(float(fm["MEAN_PSF_TO_FIBER_SPECFLUX"][i]))
                rows["name"].append(f"{name}[{i}]")
                rows["shape_r"].append(float(fm["SHAPE_R"][i]))
                rows["fiber_r"].append(float(fm["FIBERFLUX_R"][i]) or np.nan)
                for b in PHOT_BANDS:
                    rows[f"flux_{b}"].append(float(fm[f"FLUX_{b.upper()}"][i]) or np.nan)
    return {k: np.asarray(v) for k, v in rows.items()}


def real_andes_galaxies(real_dir: Path) -> dict[str, np.ndarray]:
    """The Andes BGS, LRG and ELG galaxies: flux (N, 7781), estimated ivar, imaging fluxes."""
    from astropy.table import Table

    from galclip.data.desi_tables import read_flux_table

    out: dict[str, list] = {k: [] for k in ("flux", "ivar", "programme",
                                             *[f"flux_{b}" for b in PHOT_BANDS])}
    for tag in ANDES:
        files = sorted((real_dir / "desi-andes").glob(f"coadd-{tag}-*.fits"))
        zfiles = sorted((real_dir / "desi-andes").glob(f"zbest-{tag}-*.fits"))
        if not files or not zfiles:
            continue
        tids, flux, ivar = read_flux_table(files[0])
        z = Table.read(zfiles[0])
        zrow = {int(t): k for k, t in enumerate(z["TARGETID"])}
        for t, f, iv in zip(tids, flux, ivar, strict=True):
            k = zrow.get(int(t))
            if k is None or str(z["SPECTYPE"][k]).strip() != "GALAXY":
                continue
            out["flux"].append(f)
            out["ivar"].append(iv)
            out["programme"].append(tag.split("-")[0])
            for b in PHOT_BANDS:
                out[f"flux_{b}"].append(float(z[f"FLUX_{b.upper()}"][k]))
    return {k: np.asarray(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- comparison
def compare(sim: dict[str, np.ndarray], real_dir: Path) -> dict:
    """Each effect's statistic for the simulated spectra ``sim`` (flux, ivar, efftime, sky_factor,
    psf_to_fiber, flux_g/r/z columns) and for the real ones."""
    from galclip.sim.instrument import FIBER_AREA_ARCSEC2
    from galclip.sim.observing import GOAL_EFFTIME_S, dark_sky_mag_r, sky_lines, tile_conditions

    real = real_coadd_targets(real_dir)
    andes = real_andes_galaxies(real_dir)
    lines = sky_lines() * FIBER_AREA_ARCSEC2
    sim_lines = (sim["sky_factor"] / sim["psf_to_fiber"])[:, None] * lines
    real_lines = (1.0 / real["psf"])[:, None] * lines   # dark tiles: the dark sky
    sim_phot = {b: sim[f"flux_{b}"] for b in PHOT_BANDS}
    real_phot = {b: np.concatenate([real[f"flux_{b}"], andes[f"flux_{b}"]]) for b in PHOT_BANDS}
    real_flux = np.concatenate([real["flux"], andes["flux"]])
    real_ivar = np.concatenate([real["ivar"], andes["ivar"]])
    tiles = {c: tile_conditions(c) for c in GOAL_EFFTIME_S}
    fibre_real = synthetic_nanomaggies(real_flux, real_ivar)["r"] / real_phot["r"]
    return {
        "efftime": {"sim": sim["efftime"],
                    **{f"desi_{c}_tiles": t["efftime"] for c, t in tiles.items()},
                    "real_coadds": real["efftime"], "real_names": real["name"]},
        "noise": {"sim": noise_vs_sky(sim["ivar"], sim["efftime"], sim["psf_to_fiber"]),
                  "real": noise_vs_sky(real["ivar"], real["efftime"], real["psf"])},
        "sky_residual": {"sim": sky_residual_fraction(sim["flux"], sim["ivar"], sim_lines),
                         "real": sky_residual_fraction(real["flux"], real["ivar"], real_lines)},
        "colour": {"sim": colour_offsets(sim["flux"], sim["ivar"], sim_phot),
                   "real": colour_offsets(real_flux, real_ivar, real_phot)},
        "fibre": {"sim": synthetic_nanomaggies(sim["flux"], sim["ivar"])["r"] / sim["flux_r"],
                  "real": fibre_real,
                  "real_bgs": fibre_real[len(real["name"]):][andes["programme"] == "bgs"],
                  "sim_r_half": sim.get("r_half"), "real_shape_r": real["shape_r"]},
        "masked": {"sim": masked_fraction(sim["ivar"]), "real": masked_fraction(real["ivar"])},
        "n_real": {"coadds": len(real["name"]), "andes": len(andes["flux"])},
        "dark_sky_mag_r": dark_sky_mag_r(),
    }


# ----------------------------------------------------------------------------- report section
SIM_COLUMNS = ("spectrum_flux", "spectrum_ivar", "efftime", "sky_factor", "psf_to_fiber",
               "flux_g", "flux_r", "flux_z", "r_half_disc_arcsec")
MAX_SPECTRA = 1000


def read_sim(ds) -> dict[str, np.ndarray]:
    """The first ``MAX_SPECTRA`` rows of a simulated dataset, as ``compare`` takes them."""
    cols = {c: [] for c in SIM_COLUMNS}
    n = 0
    for batch in ds.iter_batches(256, columns=list(SIM_COLUMNS)):
        for c in SIM_COLUMNS:
            cols[c].append(batch[c])
        n += len(batch["efftime"])
        if n >= MAX_SPECTRA:
            break
    t = {c: np.concatenate(v)[:MAX_SPECTRA] for c, v in cols.items()}
    t["flux"], t["ivar"], t["r_half"] = t.pop("spectrum_flux"), t.pop("spectrum_ivar"), \
        t.pop("r_half_disc_arcsec")
    return t


def robust_sigma(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else np.nan


def _fmt(q) -> str:
    return " / ".join(f"{v:.3g}" for v in q)


def section(ds, real_dir: Path, out: Path) -> list[str]:
    """Markdown lines and ``instrument.png`` comparing the instrument effects with real DESI."""
    missing = [c for c in SIM_COLUMNS if c not in ds.manifest["columns"]]
    if missing:
        return ["## Instrument effects against real DESI spectra", "",
                f"Not shown: the dataset predates these columns ({', '.join(missing)}).", ""]
    c = compare(read_sim(ds), real_dir)
    _figure(c, out / "instrument.png")
    return ["## Instrument effects against real DESI spectra", "",
            f"Simulated: {len(c['efftime']['sim'])} spectra. Real: {c['n_real']['coadds']} "
            f"pipeline coadd targets (with ivar), {c['n_real']['andes']} Andes galaxies "
            "(colours and fibre flux only), desispec's main-survey reference tiles.", "",
            *_table(c), "", "![instrument](instrument.png)", ""]


def _table(c) -> list[str]:
    e, n, s = c["efftime"], c["noise"], c["sky_residual"]
    ratio = n["sim"] / n["real"]
    rows = ["| effect | statistic | simulated (10 / 50 / 90 %) | real |", "|---|---|---|---|",
            f"| exposure | effective time, s | {_fmt(quantiles(e['sim']))} | bright tiles "
            f"{_fmt(quantiles(e['desi_bright_tiles']))}; dark tiles "
            f"{_fmt(quantiles(e['desi_dark_tiles']))}; coadds {_fmt(np.sort(e['real_coadds']))} |",
            f"| noise | sigma^2 x efftime x PSF_TO_FIBER^2 per sky-flux bin, sim / real | "
            f"{_fmt(ratio)} (bins {_fmt(SKY_BINS)}) | 1 |",
            f"| sky residual | excess at bright sky lines / line flux | {_fmt(quantiles(s['sim']))} "
            f"| {_fmt(np.sort(s['real']))} |"]
    for k in ("g-r", "r-z"):
        sim, real = c["colour"]["sim"][k], c["colour"]["real"][k]
        rows.append(f"| calibration | spectrum - imaging {k}, mag (robust sigma) | "
                    f"{_fmt(quantiles(sim))} ({robust_sigma(sim):.3f}) | {_fmt(quantiles(real))} "
                    f"({robust_sigma(real):.3f}) |")
    f = c["fibre"]
    rows += [f"| fibre loss | spectrum r / total r | {_fmt(quantiles(f['sim']))} | all "
             f"{_fmt(quantiles(f['real']))}; BGS {_fmt(np.sort(f['real_bgs']))} |",
             f"| masking | fraction of pixels with ivar 0 | {_fmt(quantiles(c['masked']['sim']))}"
             f" | {_fmt(np.sort(c['masked']['real']))} |"]
    return rows


def _figure(c, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(12, 6.5))
    e = c["efftime"]
    bins = np.linspace(0, 2500, 51)
    ax[0, 0].hist(e["sim"], bins, density=True, color="C3", alpha=0.6, label="sim")
    for k, col in (("desi_bright_tiles", "k"), ("desi_dark_tiles", "0.5")):
        ax[0, 0].hist(e[k], bins, density=True, histtype="step", color=col, label=k[5:])
    ax[0, 0].set(xlabel="effective time (s)", yscale="log")
    mids = np.sqrt(SKY_BINS[1:] * SKY_BINS[:-1])
    ax[0, 1].loglog(mids, c["noise"]["real"], "ko", label="real coadds")
    ax[0, 1].loglog(mids, c["noise"]["sim"], "C3s-", label="sim")
    ax[0, 1].set(xlabel="dark-sky flux in fibre", ylabel="sigma^2 efftime psf^2")
    ax[0, 2].hist(c["sky_residual"]["sim"], 30, color="C3", alpha=0.6, label="sim")
    for v in c["sky_residual"]["real"]:
        ax[0, 2].axvline(v, color="k", lw=1)
    ax[0, 2].set(xlabel="sky-line residual / line flux")
    for j, k in enumerate(("g-r", "r-z")):
        ax[1, 0].hist(np.clip(c["colour"]["sim"][k], -0.5, 0.5), 40, histtype="step",
                      color=f"C{3 + j}", label=f"sim {k}")
        real = c["colour"]["real"][k]
        ax[1, 0].plot(np.clip(real, -0.5, 0.5), np.full(len(real), -1.0 - j), "|", color=f"C{3 + j}",
                      ms=12, label=f"real {k}")
    ax[1, 0].set(xlabel="spectrum - imaging colour (mag, clipped at 0.5)")
    f = c["fibre"]
    if f["sim_r_half"] is not None:
        ax[1, 1].scatter(f["sim_r_half"], f["sim"], s=3, c="C3", label="sim (disc r_half)")
    ok = np.isfinite(f["real"][:len(f["real_shape_r"])])
    ax[1, 1].scatter(f["real_shape_r"][ok], f["real"][:len(f["real_shape_r"])][ok], c="k",
                     label="real coadds (SHAPE_R)")
    ax[1, 1].set(xlabel="half-light radius (arcsec)", ylabel="spectrum r / total r", ylim=(0, 1.5))
    ax[1, 2].hist(c["masked"]["sim"], 30, color="C3", alpha=0.6, label="sim")
    for v in c["masked"]["real"]:
        ax[1, 2].axvline(v, color="k", lw=1)
    ax[1, 2].set(xlabel="masked pixel fraction")
    for a in ax.ravel():
        a.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
