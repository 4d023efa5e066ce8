"""Which property of real DESI spectra moves them off the simulated manifold?

One model (a catalog's spectrum encoder + head), loaded once. The pool: the catalog's train-split
simulated spectra (stored embeddings, or re-embedded when a transformation applies to both).
Queries: the real spectra of ``sim_to_real.py`` (Andes BGS / LRG with the DER_SNR ivar, the
pipeline coadd at z 0.37 with its own ivar) and simulated test-split spectra. Each candidate
cause is applied one at a time, both ways where it can be: real made like simulated, simulated
made like real. For each: the median cosine to the nearest pool spectrum and the k-NN
(k = 16, median) redshift success within 0.01 (1 + z).

Transformations (each a function of flux, ivar, rng; names in the table):

- ``ivar_est``: the ivar replaced by the DER_SNR estimate (``galclip.data.noise``), as the no-ivar
  path reads a file;
- ``snr_to_X``: Gaussian noise added so that the median S/N per pixel is X, ivar to match;
- ``deep_xF``: (simulated only, regenerated with their noiseless spectra) observed F times deeper;
- ``ivar_div_F``: the ivar divided by F, the flux untouched (the S/N channel alone);
- ``scale_F``: flux x F, ivar / F^2 (units, aperture);
- ``tilt_A``: flux x a smooth Legendre (k = 1..3) calibration error of rms A;
- ``blur_S``: an extra Gaussian line-spread of S pixels.

Usage: python benchmarks/explore/gap_probe.py --catalog CAT --data SIMDATA [--n-sim 150]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_to_real import REAL, real_spectra  # noqa: E402

K = 16


def ivar_est(flux, ivar, rng):
    from galclip.data.noise import estimate_grid_ivar

    good = ivar > 0
    return flux, estimate_grid_ivar(np.where(good, flux, np.nan), good).astype(np.float32)


def snr_to(target):
    def f(flux, ivar, rng):
        good = ivar > 0
        snr = np.median(np.abs(flux[good]) * np.sqrt(ivar[good]))
        if snr <= target:
            return flux, ivar
        sig0 = 1 / np.sqrt(np.where(good, ivar, np.inf))
        sig = sig0 * snr / target             # the same noise shape, target S/N
        add = np.sqrt(np.clip(sig ** 2 - sig0 ** 2, 0, None))
        out = flux + np.where(good, rng.normal(size=flux.shape) * add, 0)
        return out.astype(np.float32), np.where(good, 1 / sig ** 2, 0).astype(np.float32)
    return f


def ivar_div(factor):
    return lambda flux, ivar, rng: (flux, (ivar / factor).astype(np.float32))


def scale(factor):
    return lambda flux, ivar, rng: ((flux * factor).astype(np.float32),
                                    (ivar / factor ** 2).astype(np.float32))


def tilt(rms):
    def f(flux, ivar, rng):
        from numpy.polynomial import legendre

        k = np.arange(1, 4)
        s = rms / np.sqrt(np.sum(1.0 / (2 * k + 1)))
        c = 1 + legendre.legval(np.linspace(-1, 1, len(flux)), np.r_[0, rng.normal(0, s, 3)])
        return (flux * c).astype(np.float32), (ivar / c ** 2).astype(np.float32)
    return f


def blur(sigma_pix):
    def f(flux, ivar, rng):
        from scipy.ndimage import gaussian_filter1d

        return gaussian_filter1d(flux, sigma_pix).astype(np.float32), ivar
    return f


def template_twin(basis_grid):
    """The best-fit template mix at the true redshift (calibrated as the spectrum), replacing the
    spectrum, with the spectrum's ivar: what is left of the spectrum without its residuals."""
    d = decal(basis_grid, want_model=True)

    def f(flux, ivar, rng, z):
        model = d(flux, ivar, rng, z)
        good = ivar > 0
        noise = rng.normal(size=flux.shape) / np.sqrt(np.where(good, ivar, np.inf))
        return np.where(good, model + noise, 0).astype(np.float32), ivar
    return f


def decal(basis_grid, want_model=False):
    """The flux divided by its smooth (Legendre k = 1..3) ratio to the best-fit template mix at
    the spectrum's true redshift: the real calibration made like the simulated one."""
    grid, B = basis_grid

    def f(flux, ivar, rng, z):
        from numpy.polynomial import legendre

        from galclip import conventions as C

        good = (ivar > 0) & np.isfinite(flux)
        pos = (np.log(C.wavelength_grid() / (1 + z)) - np.log(grid[0])) / 1e-4
        i0 = np.clip(pos.astype(int), 0, len(grid) - 2)
        t = pos - i0
        A = (B[:, i0] * (1 - t) + B[:, i0 + 1] * t).T
        w = np.where(good, ivar, 0)
        c = np.linalg.lstsq(A * np.sqrt(w)[:, None], np.where(good, flux, 0) * np.sqrt(w),
                            rcond=None)[0]
        model = A @ c
        x = np.linspace(-1, 1, len(flux))
        P = np.stack([model * legendre.legval(x, np.eye(4)[j]) for j in (1, 2, 3)], 1)
        a = np.linalg.lstsq(P * np.sqrt(w)[:, None], (np.where(good, flux, 0) - model)
                            * np.sqrt(w), rcond=None)[0]
        corr = 1 + legendre.legval(x, np.r_[0, a])
        if want_model:
            return model * corr
        return (flux / corr).astype(np.float32), (ivar * corr ** 2).astype(np.float32)
    return f


def smooth_est(sigma_pix):
    """Gaussian-smoothed as a publisher smooths (the Andes tables: ~2-3 px), then read without
    its ivar: the no-ivar path on a simulated spectrum made like the real tables."""
    def f(flux, ivar, rng):
        from scipy.ndimage import gaussian_filter1d

        good = ivar > 0
        return ivar_est(gaussian_filter1d(np.where(good, flux, 0), sigma_pix).astype(np.float32),
                        ivar, rng)
    return f


def rewhiten(flux, ivar, rng):
    """Independent noise added where a smoothed spectrum lacks it: the pixel-scale scatter made
    that of white noise of the (corrected) estimated level, the ivar lowered to the sum."""
    from galclip.data.noise import DESI_SEGMENTS, correlation_factor, estimate_sigma

    good = ivar > 0
    sig_w = estimate_sigma(np.where(good, flux, np.nan), good, starts=DESI_SEGMENTS)
    sig_p = sig_w / max(correlation_factor(flux, good, starts=DESI_SEGMENTS), 1.0)
    add = np.sqrt(np.clip(sig_w ** 2 - sig_p ** 2, 0, None))
    out = np.where(good, flux + rng.normal(size=flux.shape) * np.nan_to_num(add), 0)
    tot = np.nan_to_num(sig_w ** 2 + add ** 2, nan=np.inf)
    return out.astype(np.float32), np.where(good, 1 / tot, 0).astype(np.float32)


def mask_sky(fraction):
    """The pixels of the brightest sky lines (the top ``fraction`` of the simulator's dark-sky
    line spectrum, ``sim.observing.sky_lines``) marked bad, as a pipeline masks them."""
    def f(flux, ivar, rng):
        from galclip.sim.observing import sky_lines

        lines = sky_lines()
        bad = lines > np.quantile(lines, 1 - fraction)
        return np.where(bad, 0, flux).astype(np.float32), np.where(bad, 0, ivar).astype(np.float32)
    return f


def load(args):
    from galclip.data import open_dataset
    from galclip.data.splits import assign_splits
    from galclip.search.api import Catalog
    from galclip.search.catalog import read_catalog_table

    cat = Catalog(args.catalog)
    model = cat.model.eval()
    t = read_catalog_table(cat.path, ["object_id", "redshift", "spectrum_embedding"])
    ids = t.column("object_id").to_numpy()
    emb = np.stack(t.column("spectrum_embedding").to_numpy(zero_copy_only=False))
    split = assign_splits(ids)
    ds = open_dataset(args.data)
    cols = ds.read_columns(["object_id", "redshift", "programme"])
    test = np.flatnonzero(assign_splits(cols["object_id"]) == "test")[:args.n_sim]
    sims = []
    for i in test:
        r = ds[int(i)]
        sims.append({"programme": "sim " + str(r["programme"]).split("_")[0], "z": float(r["redshift"]),
                     "flux": r["spectrum_flux"], "ivar": r["spectrum_ivar"], "row": int(i)})
    pool = {"emb": emb[split == "train"], "z": t.column("redshift").to_numpy()[split == "train"],
            "ids": ids[split == "train"]}
    return model, pool, sims, ds


def embed(model, flux, ivar):
    import torch

    with torch.inference_mode():
        out = [model.encode_spectrum(np.asarray(flux[i:i + 256], np.float32),
                                     np.asarray(ivar[i:i + 256], np.float32)).numpy()
               for i in range(0, len(flux), 256)]
    return np.concatenate(out)


def score(q, pool, z):
    cos = q @ pool["emb"].T
    top = np.argsort(-cos, axis=1)[:, :K]
    zp = np.median(pool["z"][top], axis=1)
    return cos.max(1), np.abs(zp - z) / (1 + z) < 0.01


def run(model, pool, groups, name, fn, seed=0):
    row = {"variant": name}
    for g, items in groups.items():
        rng = np.random.default_rng(seed)
        fl, iv = zip(*[fn(s["flux"], s["ivar"], rng, s["z"]) if getattr(fn, "needs_z", False)
                       else fn(s["flux"], s["ivar"], rng) for s in items], strict=True)
        q = embed(model, np.stack(fl), np.stack(iv))
        c, ok = score(q, pool, np.array([s["z"] for s in items]))
        row[g] = (float(np.median(c)), int(ok.sum()), len(items))
    return row


def deep_sims(data: str, sims: list[dict], factors, n: int) -> dict:
    """Test-split rows re-simulated with their noiseless spectra, observed F times deeper."""
    from galclip.data import open_dataset
    from galclip.sim import instrument as I
    from galclip.sim.survey import GalaxySimulator, SimConfig

    cfg = open_dataset(data).manifest["provenance"]["config"]
    sim = GalaxySimulator(SimConfig(**cfg))
    out = {f: [] for f in factors}
    for s in sims[:n]:
        r = sim.simulate(s["row"], keep_truth_arrays=True)
        var0 = 1 / np.where(r["spectrum_ivar"] > 0, r["spectrum_ivar"], np.inf)
        rng = np.random.default_rng(s["row"])
        for f in factors:
            noise = rng.normal(size=I.C.N_WAVE) * np.sqrt(var0 / f)
            good = r["spectrum_ivar"] > 0
            out[f].append({**s, "flux": np.where(good, r["_noiseless_spectrum"] + noise, 0)
                           .astype(np.float32),
                           "ivar": (r["spectrum_ivar"] * f).astype(np.float32)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n-sim", type=int, default=150)
    ap.add_argument("--n-deep", type=int, default=40)
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--decal", action="store_true", help="only the calibration-matching variants")
    ap.add_argument("--smoothing", action="store_true", help="only the smoothing variants")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    model, pool, sims, ds = load(args)
    real = [s for s in real_spectra(Path(args.real)) if 0.01 < s["z"] < 1.2]
    groups = {"BGS": [s for s in real if s["programme"] == "BGS"],
              "LRG": [s for s in real if s["programme"] == "LRG"],
              "ELG": [s for s in real if s["programme"] == "ELG"],
              "coadd": [s for s in real if s["programme"] == "coadd"],
              "sim": sims}
    ident = (lambda f, i, r: (f, i))
    variants = [("as read", ident), ("ivar_est", ivar_est)]
    variants += [(f"snr_to_{x}", snr_to(x)) for x in (3, 1.5)]
    variants += [(f"ivar_div_{f}", ivar_div(f)) for f in (10, 100)]
    variants += [(f"scale_{f}", scale(f)) for f in (0.3, 3)]
    variants += [(f"tilt_{a}", tilt(a)) for a in (0.1, 0.3)]
    variants += [(f"blur_{s}", blur(s)) for s in (2.0,)]
    variants += [("ivar_est + snr_to_1.5", lambda f, i, r: snr_to(1.5)(*ivar_est(f, i, r), r))]
    if args.decal:
        from template_redshift import basis, templates

        grid, temps = templates(40, 4242)
        d = decal((grid, basis(temps, 10)))
        d.needs_z = True

        def d_snr(f, i, r, z):
            return snr_to(1.5)(*d(f, i, r, z), r)
        d_snr.needs_z = True
        tw = template_twin((grid, basis(temps, 10)))
        tw.needs_z = True

        def tw_snr(f, i, r, z):
            return snr_to(1.5)(*tw(f, i, r, z), r)
        tw_snr.needs_z = True
        variants = [("as read", ident), ("decal", d), ("decal + snr_to_1.5", d_snr),
                    ("snr_to_1.5", snr_to(1.5)), ("template twin", tw),
                    ("template twin + snr_to_1.5", tw_snr)]
    if args.smoothing:
        variants = [("as read", ident), ("ivar_est", ivar_est), ("smooth_2.2 + ivar_est",
                    smooth_est(2.2)), ("rewhiten", rewhiten), ("mask sky lines, 3 % of pixels",
                    mask_sky(0.03)), ("mask sky lines, 10 %", mask_sky(0.10))]
    rows = [run(model, pool, groups, n, fn) for n, fn in variants]
    if args.n_deep and not (args.decal or args.smoothing):
        deep = deep_sims(args.data, sims, (1, 10, 100), args.n_deep)
        for f, items in deep.items():
            for name, fn in (("", ident), (" + ivar_est", ivar_est)):
                rows.append(run(model, pool, {"sim": items}, f"sim deep_x{f}{name}", fn))
    cols = list(groups)
    print("| variant | " + " | ".join(f"{g}: median nn cos, kNN z ok" for g in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[g][0]:.3f}, {r[g][1]}/{r[g][2]}" if g in r else "" for g in cols]
        print(f"| {r['variant']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
