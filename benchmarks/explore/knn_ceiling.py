"""Control behind the spectrum temperature choice (issue 13): is k-NN (k = 64) itself the limit
of the zero-shot redshift R², or the embedding's geometry?

Scores on the test split of a cached feature file (``align_features.py`` output): a perfect 1-D
redshift "embedding" (with optional noise), redshift plus three physical properties, and the
cached spectrum backbone features at k = 8, 16, 32, 64, with the low-z / high-z bias by bin.

  python benchmarks/explore/knn_ceiling.py --features feat-sim0.npz
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import redshift_metrics

    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    args = ap.parse_args()
    f = np.load(args.features, allow_pickle=True)
    z = f["redshift"].astype(float)
    tr, te = f["split"] == "train", f["split"] == "test"

    def show(name, x, k=64):
        m = redshift_metrics(z[te], knn_predict(x[tr], z[tr], x[te], k=k))
        print(f"{name:<40} k={k:<3} R2 {m['r2']:.4f}  sigma_NMAD {m['sigma_nmad']:.4f}  "
              f"eta_0.05 {m['eta_0.05']:.3f}")

    rng = np.random.default_rng(0)
    for noise in (0.0, 0.003, 0.01):
        show(f"true z + N(0, {noise}(1+z))", (z + noise * (1 + z) * rng.standard_normal(len(z)))[:, None])
    show("true z, mass, sSFR, age (standardized)",
         np.stack([z, f["log_mstar"], f["log_ssfr"], f["tage_mw"]], 1))
    s = f["spec_pooled"].astype(float)
    for k in (8, 16, 32, 64):
        show("spectrum backbone features", s, k)
    pred = knn_predict(s[tr], z[tr], s[te])
    dz = (pred - z[te]) / (1 + z[te])
    for lo, hi in ((0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.6)):
        b = (z[te] >= lo) & (z[te] < hi)
        print(f"z {lo}-{hi}: n {b.sum():4d}  median dz/(1+z) {np.median(dz[b]):+.4f}  "
              f"outliers(>0.05) {np.mean(np.abs(dz[b]) > 0.05):.2f}")


if __name__ == "__main__":
    main()
