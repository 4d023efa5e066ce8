"""Realism report of a simulated dataset: the simulation side by side with real data.

Compares (1) the g - r colour-redshift relation with the SDSS DR7 r < 17.6 sample in
``shared/data/real/sdss`` (same filters, same magnitude limit), (2) the redshift and r-magnitude
distributions with a bright-galaxy survey, (3) emission-line ratios with the BPT star-forming
locus (Kauffmann et al. 2003), (4) spectral inverse variances with real DESI coadds, (5) each
instrument effect of the spectra with real DESI spectra (``report_instrument.py``), and shows
example cutouts and spectra. The statistics are plain functions that the tests also call.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from galclip import conventions as C

SDSS_FILE = "sdss/sdss_dr7_galaxies_ugr_specz.fits"
SDSS_MAG_LIMIT = 17.6
COLOUR_BINS = np.array([0.02, 0.05, 0.08, 0.11, 0.14, 0.20])


def real_data_dir() -> Path | None:
    """``$GALCLIP_REAL_DATA`` or ``shared/data/real`` beside the project checkout."""
    env = os.environ.get("GALCLIP_REAL_DATA")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[4] / "shared" / "data" / "real")
    return next((p for p in cands if p.exists()), None)


def load_sdss(real_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(redshift, g - r, r) of the galaxies of the SDSS DR7 magnitude-limited sample that the
    simulated BGS could hold (:func:`sdss_galaxies`)."""
    from astropy.table import Table

    t = Table.read(real_dir / SDSS_FILE)
    z, gr, r = (np.asarray(t["z"], float), np.asarray(t["g"] - t["r"], float),
                np.asarray(t["r"], float))
    keep = sdss_galaxies(z, gr)
    return z[keep], gr[keep], r[keep]


def sdss_galaxies(z: np.ndarray, gr: np.ndarray) -> np.ndarray:
    """The rows of the SDSS file that are galaxies in the simulated BGS window: the file is
    every photometric galaxy with a spectrum, so it also holds stars (z ~ 0), quasars (z up
    to 2.7) and failed photometry (g - r of -10^4); kept are the BGS redshift window
    (0.01-0.6, ``targeting.PROGRAMMES``) and BGS's colour sanity limits, -1 < g - r < 4 (383 of
    the 24 496 rows go). A handful of such rows moves the k-NN R^2 of a few hundred galaxies
    between 0 and 0.7."""
    from galclip.sim.targeting import PROGRAMMES

    bgs = PROGRAMMES["bgs_bright"]
    return (z > bgs.z_min) & (z < bgs.z_max) & (gr > -1.0) & (gr < 4.0)


def binned_medians(z: np.ndarray, y: np.ndarray, bins: np.ndarray = COLOUR_BINS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``y`` and count in each redshift bin."""
    idx = np.digitize(z, bins) - 1
    med = np.array([np.median(y[idx == i]) if np.any(idx == i) else np.nan
                    for i in range(len(bins) - 1)])
    return med, np.bincount(idx[(idx >= 0) & (idx < len(bins) - 1)], minlength=len(bins) - 1)


def colour_redshift_comparison(sim_z, sim_gr, real_z, real_gr, bins=COLOUR_BINS) -> dict:
    """Median g - r per redshift bin for simulation and real data, and their difference."""
    ms, ns = binned_medians(np.asarray(sim_z), np.asarray(sim_gr), bins)
    mr, nr = binned_medians(np.asarray(real_z), np.asarray(real_gr), bins)
    return {"bins": bins.tolist(), "sim_median": ms.tolist(), "real_median": mr.tolist(),
            "sim_n": ns.tolist(), "real_n": nr.tolist(), "difference": (ms - mr).tolist()}


def kauffmann03(log_n2ha: np.ndarray) -> np.ndarray:
    """Upper envelope of star-forming galaxies in the BPT diagram (Kauffmann et al. 2003)."""
    return 0.61 / (np.asarray(log_n2ha) - 0.05) + 1.3


def kewley01(log_n2ha: np.ndarray) -> np.ndarray:
    """Maximum starburst line (Kewley et al. 2001)."""
    return 0.61 / (np.asarray(log_n2ha) - 0.47) + 1.19


def bpt_star_forming(nii, halpha, oiii, hbeta) -> np.ndarray:
    """True where a galaxy's line ratios lie on the star-forming side of Kauffmann et al. 2003."""
    x = np.log10(np.asarray(nii) / np.asarray(halpha))
    y = np.log10(np.asarray(oiii) / np.asarray(hbeta))
    return (x < 0.05) & (y < kauffmann03(x))


def number_count_slope(mag: np.ndarray, lo: float, hi: float) -> float:
    """d log10 N / dm of the differential counts between ``lo`` and ``hi`` (least squares);
    NaN when fewer than two 0.5 mag bins hold a galaxy."""
    edges = np.arange(lo, hi + 1e-9, 0.5)
    n, _ = np.histogram(mag, edges)
    good = n > 0
    if good.sum() < 2:
        return float("nan")
    return float(np.polyfit(0.5 * (edges[1:] + edges[:-1])[good], np.log10(n[good]), 1)[0])


def desi_ivar_comparison(real_dir: Path) -> dict:
    """Median ivar per arm of the real DESI SV3 dark target fibres vs the simulator's sky-only
    noise for the same fibres' effective times (from TSNR2_LRG) and point-source fibre
    fractions (PSF_TO_FIBER_SPECFLUX, by which the pipeline divides the flux); the targets are
    faint, so their noise is sky-limited."""
    from galclip.sim import instrument as I
    from galclip.sim.report_instrument import real_coadd_targets

    real = real_coadd_targets(real_dir)
    keep = np.char.startswith(real["name"].astype(str), "coadd-sv3-dark-26065")
    wave = C.wavelength_grid()
    out = {}
    for arm, (lo, hi) in {"B": (3600, 5800), "R": (5760, 7620), "Z": (7520, 9824)}.items():
        m = (wave >= lo) & (wave <= hi)
        r, s = [], []
        for iv, eff, psf in zip(real["ivar"][keep], real["efftime"][keep], real["psf"][keep],
                                strict=True):
            r.append(np.median(iv[m]))
            var = I.spectrum_variance(np.zeros(C.N_WAVE), I.Exposure(eff, 1.0)) / psf**2
            s.append(np.median(1.0 / var[m]))
        out[arm] = {"real": float(np.median(r)), "sim": float(np.median(s))}
    return out


def default_report_dir(dataset: str | Path) -> Path:
    """``runs/demo/data`` -> ``runs/demo/data-realism``."""
    d = Path(dataset)
    d = d if d.name not in ("", ".", "..") else d.resolve()
    return d.with_name(f"{d.name}-realism")


def write_report(dataset: str | Path, out: str | Path | None = None) -> Path:
    """Write ``realism.md`` and figures for a simulated dataset; returns the markdown path.

    ``out`` defaults to ``default_report_dir(dataset)``, a folder beside the dataset (never
    inside it: a dataset folder holds its manifest and shards only)."""
    import matplotlib

    matplotlib.use("Agg")
    from galclip.data import open_dataset

    ds = open_dataset(dataset)
    out = Path(out) if out else default_report_dir(dataset)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["redshift", "mag_r", "sdss_g", "sdss_r", "flux_g", "flux_r", "quenched",
            "line_nii_6584", "line_halpha", "line_oiii_5007", "line_hbeta"]
    missing = [c for c in cols if c not in ds.manifest["columns"]]
    if missing:
        raise ValueError(f"{dataset}: not a simulated dataset (missing columns {missing})")
    t = ds.read_columns(cols + (["programme"] if "programme" in ds.manifest["columns"] else []))
    lines = [f"# Realism report: {dataset}", "", f"{len(ds)} simulated galaxies.", ""]
    lines += _section_distributions(t, out)
    real = real_data_dir()
    if real is None:
        lines += ["Real comparison data not found (set GALCLIP_REAL_DATA to shared/data/real).", ""]
    else:
        from galclip.sim.report_instrument import section

        lines += _section_colours(t, real, out) + _section_ivar(real) + section(ds, real, out)
    lines += _section_bpt(t, out) + _section_examples(ds, out)
    path = out / "realism.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _section_distributions(t, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].hist(t["redshift"], bins=30, color="0.3")
    ax[0].set_xlabel("redshift")
    ax[1].hist(t["mag_r"], bins=np.arange(14, 23.0, 0.25), color="0.3", log=True)
    ax[1].set_xlabel("r (AB)")
    fig.tight_layout()
    fig.savefig(out / "distributions.png", dpi=90)
    plt.close(fig)
    bright = t["mag_r"] if "programme" not in t else t["mag_r"][t["programme"] == "bgs_bright"]
    slope = number_count_slope(bright, 16.0, 19.5)
    return ["## Redshift and magnitude distributions", "",
            f"Median redshift {np.median(t['redshift']):.3f} (DESI BGS Bright: about 0.2); "
            f"BGS Bright r-band differential count slope d log N / dm = {slope:.2f} over 16 < r < 19.5 "
            "(Euclidean 0.6; bright-galaxy counts are 0.45-0.6).", "",
            "![distributions](distributions.png)", ""]


def _section_colours(t, real: Path, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    rz, rgr, _ = load_sdss(real)
    sel = t["sdss_r"] < SDSS_MAG_LIMIT
    cmp = colour_redshift_comparison(t["redshift"][sel], (t["sdss_g"] - t["sdss_r"])[sel], rz, rgr)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(rz, rgr, s=1, c="0.7", label="SDSS DR7 r<17.6")
    ax.scatter(t["redshift"][sel], (t["sdss_g"] - t["sdss_r"])[sel], s=6, c="C3", label="galclip sim")
    mids = 0.5 * (COLOUR_BINS[1:] + COLOUR_BINS[:-1])
    ax.plot(mids, cmp["real_median"], "k-o", label="SDSS median")
    ax.plot(mids, cmp["sim_median"], "C3-s", label="sim median")
    ax.set(xlim=(0, 0.25), ylim=(0, 1.6), xlabel="redshift", ylabel="g - r (SDSS filters)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "colour_redshift.png", dpi=90)
    plt.close(fig)
    rows = ["| z bin | SDSS median g-r (n) | sim median g-r (n) | difference |", "|---|---|---|---|"]
    for i in range(len(COLOUR_BINS) - 1):
        rows.append(f"| {COLOUR_BINS[i]:.2f}-{COLOUR_BINS[i+1]:.2f} | {cmp['real_median'][i]:.3f} "
                    f"({cmp['real_n'][i]}) | {cmp['sim_median'][i]:.3f} ({cmp['sim_n'][i]}) | "
                    f"{cmp['difference'][i]:+.3f} |")
    return ["## Colour-redshift relation against SDSS DR7 (r < 17.6)", "", *rows, "",
            "![colour-redshift](colour_redshift.png)", ""]


def _section_ivar(real: Path) -> list[str]:
    cmp = desi_ivar_comparison(real)
    rows = ["| arm | real median ivar | simulated | ratio |", "|---|---|---|---|"]
    rows += [f"| {a} | {v['real']:.2f} | {v['sim']:.2f} | {v['sim'] / v['real']:.2f} |"
             for a, v in cmp.items()]
    return ["## Spectral noise against real DESI SV3 dark coadds (their effective times, dark sky)", "",
            *rows, ""]


def _section_bpt(t, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    ok = (t["quenched"] == 0) & (t["line_halpha"] > 0) & (t["line_hbeta"] > 0)
    if not np.any(ok):
        return []
    x = np.log10(t["line_nii_6584"][ok] / t["line_halpha"][ok])
    y = np.log10(t["line_oiii_5007"][ok] / t["line_hbeta"][ok])
    frac = float(np.mean(bpt_star_forming(t["line_nii_6584"][ok], t["line_halpha"][ok],
                                          t["line_oiii_5007"][ok], t["line_hbeta"][ok])))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(x, y, s=4, c="C0")
    xx = np.linspace(-2, 0.0, 100)
    ax.plot(xx, kauffmann03(xx), "k--", label="Kauffmann+03")
    xx = np.linspace(-2, 0.4, 100)
    ax.plot(xx, kewley01(xx), "k:", label="Kewley+01")
    ax.set(xlim=(-2, 0.5), ylim=(-1.5, 1.5), xlabel="log [NII]/Ha", ylabel="log [OIII]/Hb")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "bpt.png", dpi=90)
    plt.close(fig)
    return ["## Emission lines: BPT diagram of star-forming galaxies", "",
            f"{frac:.1%} of {int(ok.sum())} star-forming galaxies lie below the Kauffmann et al. "
            "(2003) line.", "", "![bpt](bpt.png)", ""]


def _section_examples(ds, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    from galclip.render import color_composite

    n = min(6, len(ds))
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5), squeeze=False)
    wave = C.wavelength_grid()
    for k in range(n):
        row = ds[k]
        axes[0, k].imshow(color_composite(row["image"]), origin="lower")
        axes[0, k].set_title(f"z={row['redshift']:.2f} r={row['mag_r']:.1f}", fontsize=8)
        axes[0, k].axis("off")
        ivar = row["spectrum_ivar"].astype(np.float64)
        box = np.ones(9)  # inverse-variance weighted 9-pixel (7.2 A) smoothing for display
        weight = np.maximum(np.convolve(ivar, box, "same"), 1e-12)
        f = np.convolve(row["spectrum_flux"] * ivar, box, "same") / weight
        axes[1, k].plot(wave, f, lw=0.4, c="0.2")
        lo, hi = np.percentile(f, [0.5, 99.8])
        axes[1, k].set_ylim(lo - 0.3 * (hi - lo), hi + 0.1 * (hi - lo))
        axes[1, k].tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=80)
    plt.close(fig)
    return ["## Example cutouts (g, r, z composite) and spectra", "", "![examples](examples.png)", ""]
