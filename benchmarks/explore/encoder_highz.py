"""How well a pretrained spectrum encoder reads redshift by redshift bin, on a separately
simulated query set (e.g. 2000 LRGs of another seed: ``galclip simulate --n 2000 --programmes lrg
--seed 101``), so that the sparse top of the range (z > 0.9, ~70 rows in the demo's val split)
is measured on hundreds of galaxies.

For each encoder: pooled features (L2-normalised) of the pool dataset's train split and of every
query spectrum; redshift = median of the 16 nearest pool spectra (cosine); per bin of true z the
share within 0.01 (1 + z) and the median (z_NN - z) / (1 + z).

Usage: python benchmarks/explore/encoder_highz.py --data POOL --queries QUERIES ENCODER [...]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder_sim_to_real import features, knn_z, read_split  # noqa: E402

BINS = (0.3, 0.6, 0.8, 0.9, 1.0, 1.1, 1.25)


def main() -> None:
    from galclip.data import open_dataset
    from galclip.models.checkpoint import load_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the pool: its train split are the neighbours")
    ap.add_argument("--queries", required=True, help="a dataset whose every spectrum is queried")
    ap.add_argument("encoders", nargs="+")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    cols, z, tr, _ = read_split(args.data, "val")
    q = open_dataset(args.queries).read_columns(["redshift", "spectrum_flux", "spectrum_ivar"])
    qz = q["redshift"].astype(np.float64)
    bins = list(zip(BINS[:-1], BINS[1:], strict=True))
    print("| encoder | " + " | ".join(f"z {a}-{b}: n, within, offset" for a, b in bins)
          + " | all |")
    for path in args.encoders:
        enc = load_encoder(path).eval()
        pool = features(enc, cols["spectrum_flux"][tr], cols["spectrum_ivar"][tr])
        zp, _ = knn_z(features(enc, q["spectrum_flux"], q["spectrum_ivar"]), pool, z[tr])
        dz = (zp - qz) / (1 + qz)
        cells = []
        for a, b in bins:
            m = (qz >= a) & (qz < b)
            cells.append(f"{m.sum()}, {np.mean(np.abs(dz[m]) < 0.01):.3f}, {np.median(dz[m]):+.4f}"
                         if m.any() else "-")
        print(f"| {path} | " + " | ".join(cells) + f" | {np.mean(np.abs(dz) < 0.01):.3f} |")


if __name__ == "__main__":
    main()
