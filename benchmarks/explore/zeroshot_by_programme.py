"""Which simulated galaxies does the spectrum zero-shot k-NN get wrong, by DESI programme?

The demo's evaluate scores the test split with a k-NN (k = 64) on the train split's embeddings;
this script repeats the spectrum k-NN on a demo catalog (cosine, the catalog's own index, the
neighbour pool restricted to the train split) and breaks σ_NMAD and the catastrophic fraction
down by the ``programme`` column and the S/N of the spectrum.

    python benchmarks/explore/zeroshot_by_programme.py --catalog runs/demo/catalog --data runs/demo/data
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--k", type=int, default=64)
    args = ap.parse_args()
    from sklearn.neighbors import KNeighborsRegressor

    from galclip.data import open_dataset
    from galclip.data.splits import split_indices
    from galclip.search.api import Catalog

    ds = open_dataset(args.data)
    t = ds.read_columns(["object_id", "redshift", "programme", "mag_r", "efftime"])
    cat = Catalog(args.catalog)
    vec = np.stack([cat.embedding(int(i), "spectrum") for i in t["object_id"]])
    tr, te = split_indices(t["object_id"], "train"), split_indices(t["object_id"], "test")
    knn = KNeighborsRegressor(args.k, metric="cosine").fit(vec[tr], t["redshift"][tr])
    z, zp = t["redshift"][te], knn.predict(vec[te])
    dz = (zp - z) / (1 + z)
    prog = np.asarray(t["programme"])[te]
    print("| programme | n | σ_NMAD | η0.15 | η0.05 | median z | median r |")
    print("|---|---|---|---|---|---|---|")
    for p in sorted(set(prog)) + ["all"]:
        s = np.ones(len(z), bool) if p == "all" else prog == p
        d = dz[s]
        nmad = 1.4826 * np.median(np.abs(d - np.median(d)))
        print(f"| {p} | {s.sum()} | {nmad:.4f} | {np.mean(np.abs(d) > 0.15):.3f} | "
              f"{np.mean(np.abs(d) > 0.05):.3f} | {np.median(z[s]):.3f} | "
              f"{np.median(t['mag_r'][te][s]):.2f} |")
    bad = np.abs(dz) > 0.15
    print("catastrophic: true z", np.round(z[bad], 3).tolist())
    print("              pred z", np.round(zp[bad], 3).tolist())
    print("              programme", prog[bad].tolist())


if __name__ == "__main__":
    main()
