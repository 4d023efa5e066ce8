"""Are real DESI spectra read wrong because they are deeper than any simulated one?

The shared real spectra are early validation exposures, several times deeper than DESI's main
survey, which is what the simulator draws (``sim.observing``: real main-survey tiles' effective
times). Here each real spectrum is brought to a main-survey depth before it is embedded: the
noise an exposure of the goal effective time (180 s bright for BGS, 1000 s dark otherwise) of
this flux would have (``sim.instrument.spectrum_variance``, dark sky) is reached by adding
Gaussian noise of variance max(var_goal - var_real, 0), with ivar = 1 / max(var_goal, var_real);
the redshift is then the median of the k nearest simulated spectra, for each of ``--draws``
noise draws (the median of those), against the spectrum as it is.

Usage: python benchmarks/explore/real_depth_match.py --catalog CAT [--k 16] [--draws 5]
       [--scale 1.0]   (goal effective time x scale)
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def goal_variance(flux: np.ndarray, efftime: float) -> np.ndarray:
    from scipy.ndimage import median_filter

    from galclip.sim import instrument as I

    smooth = median_filter(np.nan_to_num(flux), size=51)
    return I.spectrum_variance(smooth, I.Exposure(exptime_s=efftime, sky_factor=1.0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from sim_to_real import REAL, real_spectra

    from galclip.search.api import Catalog

    cat = Catalog(args.catalog)
    rng = np.random.default_rng(0)

    def read(flux, ivar) -> float:
        res = cat.search(spectrum=(flux, ivar), k=args.k)
        return float(np.median([n["redshift"] for n in res.neighbours]))

    print("| programme | z | as is | depth-matched (median of draws) | S/N as is -> matched |")
    ok = {"as is": 0, "matched": 0}
    n = 0
    for s in real_spectra(REAL):
        if s["programme"] not in ("BGS", "LRG", "coadd"):
            continue
        eff = (180.0 if s["programme"] == "BGS" else 1000.0) * args.scale
        f, iv = np.asarray(s["flux"], np.float64), np.asarray(s["ivar"], np.float64)
        good = iv > 0
        var_r = np.where(good, 1.0 / np.where(good, iv, 1.0), np.inf)
        var_g = goal_variance(f, eff)
        add = np.where(good, np.clip(var_g - var_r, 0, None), 0.0)
        new_iv = np.where(good, 1.0 / np.maximum(var_g, var_r), 0.0)
        zs = [read(f + rng.normal(size=f.shape) * np.sqrt(add), new_iv) for _ in range(args.draws)]
        z0, z1 = read(f, iv), float(np.median(zs))
        snr0 = np.median((np.abs(f) * np.sqrt(iv))[good])
        snr1 = np.median((np.abs(f) * np.sqrt(new_iv))[good])
        n += 1
        ok["as is"] += abs(z0 - s["z"]) / (1 + s["z"]) < 0.01
        ok["matched"] += abs(z1 - s["z"]) / (1 + s["z"]) < 0.01
        print(f"| {s['programme']} | {s['z']:.3f} | {z0:.3f} | {z1:.3f} ({min(zs):.3f}-{max(zs):.3f})"
              f" | {snr0:.1f} -> {snr1:.1f} |")
    print(f"within 0.01(1+z) of {n}: as is {ok['as is']}, depth-matched {ok['matched']}")


if __name__ == "__main__":
    main()
