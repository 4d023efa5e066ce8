"""Sim-to-real of a pretrained spectrum encoder alone: before/after a change to its training.

For each spectrum encoder checkpoint given (``galclip pretrain spectrum`` output), the pooled
features (L2-normalised) of every spectrum of a simulated dataset are computed; the k-NN
(k = 16, cosine, median) redshift of the test split from the train split gives the zero-shot
figures on the simulation (sigma_NMAD, within 0.01 (1 + z), eta_0.15), the same with a 10 %
smooth calibration tilt on the test spectra (``augment.calibration_view``), and the real DESI
spectra of ``sim_to_real.py`` inside the simulated redshift range (within 0.01 (1 + z), median
cosine to the nearest simulated spectrum) with the train split as the neighbours.

Usage: python benchmarks/explore/encoder_sim_to_real.py --data SIMDATA [--split val] ENCODER [...]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sim_to_real import REAL, real_spectra  # noqa: E402

K = 16


def features(enc, flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(flux), 256):
            p = enc(torch.as_tensor(flux[i:i + 256]), torch.as_tensor(ivar[i:i + 256]))["pooled"]
            out.append(torch.nn.functional.normalize(p, dim=-1).numpy())
    return np.concatenate(out)


def knn_z(q: np.ndarray, pool: np.ndarray, zpool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cos = q @ pool.T
    top = np.argsort(-cos, axis=1)[:, :K]
    return np.median(zpool[top], axis=1), cos.max(1)


def figures(z: np.ndarray, zp: np.ndarray) -> dict:
    dz = (zp - z) / (1 + z)
    return {"n": len(z), "sigma_nmad": float(1.4826 * np.median(np.abs(dz - np.median(dz)))),
            "within_0.01": float(np.mean(np.abs(dz) < 0.01)),
            "eta_0.15": float(np.mean(np.abs(dz) > 0.15))}


def read_split(data: str, split: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """The dataset's spectra: (columns, redshift, train mask, mask of ``split``)."""
    from galclip.data import open_dataset
    from galclip.data.splits import assign_splits

    cols = open_dataset(data).read_columns(["object_id", "redshift", "spectrum_flux",
                                            "spectrum_ivar", "programme"])
    s = assign_splits(cols["object_id"])
    return cols, cols["redshift"].astype(np.float64), s == "train", s == split


def main() -> None:
    import torch

    from galclip.augment import calibration_view
    from galclip.models.checkpoint import load_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--split", default="test", choices=("test", "val"),
                    help="the simulated spectra queried against the train split (choose on val)")
    ap.add_argument("encoders", nargs="+")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cols, z, tr, te = read_split(args.data, args.split)
    real = [s for s in real_spectra(Path(args.real)) if z.min() < s["z"] < z.max()]
    rf = np.stack([s["flux"] for s in real]).astype(np.float32)
    ri = np.stack([s["ivar"] for s in real]).astype(np.float32)
    rz = np.array([s["z"] for s in real])
    g = torch.Generator().manual_seed(0)
    tf, ti = calibration_view(torch.as_tensor(cols["spectrum_flux"][te]),
                              torch.as_tensor(cols["spectrum_ivar"][te]), 0.1, g)
    print(f"| encoder | sim {args.split}: sigma_NMAD, within 0.01, eta_0.15 | same, 10 % tilt | "
          + " | ".join(f"real {p}: within 0.01 / n, median nn cos"
                       for p in dict.fromkeys(s["programme"] for s in real)) + " |")
    for path in args.encoders:
        enc = load_encoder(path).eval()
        emb = features(enc, cols["spectrum_flux"], cols["spectrum_ivar"])
        zp, _ = knn_z(emb[te], emb[tr], z[tr])
        a = figures(z[te], zp)
        zt, _ = knn_z(features(enc, tf.numpy(), ti.numpy()), emb[tr], z[tr])
        b = figures(z[te], zt)
        zr, cr = knn_z(features(enc, rf, ri), emb[tr], z[tr])
        ok = np.abs(zr - rz) / (1 + rz) < 0.01
        cells = []
        for p in dict.fromkeys(s["programme"] for s in real):
            m = np.array([s["programme"] == p for s in real])
            cells.append(f"{int(ok[m].sum())} / {int(m.sum())}, {np.median(cr[m]):.3f}")
        print(f"| {path} | {a['sigma_nmad']:.4f}, {a['within_0.01']:.3f}, {a['eta_0.15']:.3f} | "
              f"{b['sigma_nmad']:.4f}, {b['within_0.01']:.3f}, {b['eta_0.15']:.3f} | "
              + " | ".join(cells) + " |")
        for p in np.unique(cols["programme"][te]):
            m = cols["programme"][te] == p
            f = figures(z[te][m], zp[m])
            ft = figures(z[te][m], zt[m])
            print(f"    sim {p}: n {f['n']}, sigma_NMAD {f['sigma_nmad']:.4f}, within 0.01 "
                  f"{f['within_0.01']:.3f}, eta_0.15 {f['eta_0.15']:.3f}; with the tilt "
                  f"{ft['sigma_nmad']:.4f}, {ft['within_0.01']:.3f}, {ft['eta_0.15']:.3f}")
        hi = z[te] >= 0.9
        f = figures(z[te][hi], zp[hi])
        print(f"    sim z >= 0.9: n {f['n']}, within 0.01 {f['within_0.01']:.3f}, median offset "
              f"{np.median((zp[hi] - z[te][hi]) / (1 + z[te][hi])):+.4f}")
        for s, zz in zip(real, zr, strict=True):
            print(f"    {s['programme']} z {s['z']:.4f} knn {zz:.4f}")


if __name__ == "__main__":
    main()
