"""Where the zero-shot spectrum redshift error comes from (issue 13): k-NN (k = 16 and 64) on the
aligned and unaligned spectrum embeddings that a ``galclip evaluate`` run cached, and the median
bias and share of the squared error by redshift bin. Arguments: pairs of REPORT_DIR DATA_DIR.

  python benchmarks/explore/knn_tails.py runs/demo/report runs/demo/data runs/seed1-report runs/seed1
"""
from __future__ import annotations

import glob
import sys

import numpy as np


def main(args: list[str]) -> None:
    from galclip.data import open_dataset
    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import redshift_metrics

    if len(args) % 2 or not args:
        raise SystemExit(__doc__)
    for report, data in zip(args[::2], args[1::2], strict=True):
        lab = open_dataset(data, verify=False).read_columns(["object_id", "redshift"])
        z_of = dict(zip(lab["object_id"].tolist(), lab["redshift"].tolist(), strict=True))
        tr = np.load(glob.glob(f"{report}/cache/*/clip-train*")[0])
        te = np.load(glob.glob(f"{report}/cache/*/clip-test*")[0])
        ztr = np.array([z_of[i] for i in tr["object_id"]])
        zte = np.array([z_of[i] for i in te["object_id"]])
        print(report, "z 5/50/95 %: train", np.percentile(ztr, [5, 50, 95]).round(3),
              "test", np.percentile(zte, [5, 50, 95]).round(3))
        for key in ("spectrum_embedding", "spectrum_pooled"):
            for k in (16, 64):
                m = redshift_metrics(zte, knn_predict(tr[key], ztr, te[key], k=k))
                print(f"  {key:<20} k={k:<3} R2 {m['r2']:.4f}  sigma_NMAD {m['sigma_nmad']:.4f}  "
                      f"eta_0.05 {m['eta_0.05']:.4f}")
        p = knn_predict(tr["spectrum_embedding"], ztr, te["spectrum_embedding"])
        dz, sse = (p - zte) / (1 + zte), ((p - zte) ** 2).sum()
        for lo, hi in ((0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.7)):
            b = (zte >= lo) & (zte < hi)
            print(f"    z {lo}-{hi}: n {b.sum():3d}  median dz/(1+z) {np.median(dz[b]):+.4f}  "
                  f"share of squared error {((p - zte)[b] ** 2).sum() / sse:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
