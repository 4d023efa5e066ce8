"""Which neighbour metric makes the difference between ``galclip predict``'s and ``galclip
evaluate``'s zero-shot point estimates? Evaluate's ``KNNRegressor`` (k = 64 of the reference's
training split) on the same new galaxies in three spaces: standardized embeddings (evaluate),
unit vectors without standardization (the cosine of the catalog's FAISS index, which predict
searches), unit vectors then standardized.

    python benchmarks/explore/knn_metric_compare.py --reference runs/demo/catalog \\
        --catalog runs/sim-seed7/catalog [--catalog ...] [--from spectrum]
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from galclip.data.splits import split_indices
    from galclip.eval import metrics as M
    from galclip.eval.knn import KNNRegressor
    from galclip.search.catalog import read_catalog_table, read_embeddings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True)
    p.add_argument("--catalog", required=True, action="append")
    p.add_argument("--from", dest="from_", default="spectrum", choices=("image", "spectrum"))
    p.add_argument("--k", type=int, default=64)
    args = p.parse_args()
    r = read_catalog_table(args.reference, ["object_id", "redshift"])
    ids = r.column("object_id").to_numpy()
    train = np.zeros(len(ids), bool)
    train[split_indices(ids, "train")] = True
    x, rows = read_embeddings(args.reference, args.from_)
    keep = train[rows]
    z = r.column("redshift").to_numpy()[rows[keep]].astype(float)
    q, zt = [], []
    for c in args.catalog:
        v, qrows = read_embeddings(c, args.from_)
        q.append(v)
        zt.append(read_catalog_table(c, ["redshift"]).column(0).to_numpy()[qrows].astype(float))
    q, zt = np.concatenate(q), np.concatenate(zt)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    print("| space | σ_NMAD | η0.15 | η0.05 |")
    print("|---|---|---|---|")
    for name, xx, qq, std in (("standardized (evaluate)", x[keep], q, True),
                              ("unit vectors (predict's index)", unit(x[keep]), unit(q), False),
                              ("unit vectors, then standardized", unit(x[keep]), unit(q), True)):
        m = M.redshift_metrics(zt, KNNRegressor(k=args.k, standardize=std).fit(xx, z).predict(qq))
        print(f"| {name} | {m['sigma_nmad']:.4f} | {m['eta_0.15']:.4f} | {m['eta_0.05']:.4f} |")


if __name__ == "__main__":
    main()
