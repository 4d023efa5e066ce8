"""How the zero-shot k-NN depends on k at the demo's pool size.

AstroCLIP's protocol (Parker et al. 2024, Sec. 5.1) is a distance-weighted k-NN with k = 64 on
a training pool of ~160,000 galaxies: each query averages over 0.04 % of the pool. The CPU demo's
pool is ~4,000 galaxies, so k = 64 averages over 1.6 % of it — 40 times wider in the embedding,
which at the thin high-redshift end reaches across redshift. This script repeats evaluate's
zero-shot redshift (galclip.eval.knn.KNNRegressor: train-split mean/std standardisation,
inverse-distance weights) for several k, on the test split of a demo catalog.

    python benchmarks/explore/zeroshot_k_sweep.py --catalog runs/demo/catalog --data runs/demo/data
"""
from __future__ import annotations

import argparse

import numpy as np


def _nmad(d: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--k", default="8,16,32,64", help="comma-separated k values")
    args = ap.parse_args()
    from sklearn.metrics import r2_score

    from galclip.data import open_dataset
    from galclip.data.splits import split_indices
    from galclip.eval.knn import KNNRegressor
    from galclip.search.api import Catalog

    t = open_dataset(args.data).read_columns(["object_id", "redshift"])
    cat = Catalog(args.catalog)
    tr, te = split_indices(t["object_id"], "train"), split_indices(t["object_id"], "test")
    z = np.asarray(t["redshift"], dtype=float)
    print(f"train pool {len(tr)}, test {len(te)}")
    print("| modality | k | k / pool | R² | σ_NMAD | η0.15 |")
    print("|---|---|---|---|---|---|")
    for mod in ("spectrum", "image"):
        vec = np.stack([cat.embedding(int(i), mod) for i in t["object_id"]])
        for k in (int(s) for s in args.k.split(",")):
            zp = KNNRegressor(k=k).fit(vec[tr], z[tr]).predict(vec[te])
            d = (zp - z[te]) / (1 + z[te])
            print(f"| {mod} | {k} | {k / len(tr):.2%} | {r2_score(z[te], zp):.4f} | {_nmad(d):.4f} | "
                  f"{np.mean(np.abs(d) > 0.15):.3f} |")


if __name__ == "__main__":
    main()
