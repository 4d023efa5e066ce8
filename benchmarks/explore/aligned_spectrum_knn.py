"""How well the *aligned* spectrum embedding of a catalog orders simulated spectra by redshift:
16-NN (cosine, median) z of the val and test splits from the train split, the fraction within
0.01 (1 + z), overall and for the LRGs (the catalog's own vectors, the ones search uses), and
with ``--by-z`` the same per bin of true redshift with the median signed offset (z_NN - z)/(1 + z):
is a galaxy near the top of the simulated range read low because its neighbours can only lie below?
With ``--queries QCAT`` (one per CATALOG, embedded by the same model: ``galclip embed --model
RUN/align/model.safetensors --data OTHER --out QCAT``) every row of QCAT is queried instead of
the val and test splits, e.g. 2000 separately simulated LRGs for the top of the range.

Usage: python benchmarks/explore/aligned_spectrum_knn.py [--by-z] [--queries QCAT ...] CATALOG [...]
"""
from __future__ import annotations

import argparse

import numpy as np

K = 16
Z_BINS = (0.0, 0.3, 0.6, 0.8, 0.9, 1.0, 1.1, 1.25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--by-z", action="store_true", help="per bin of true redshift as well")
    ap.add_argument("--queries", nargs="+", help="query catalogs, one per CATALOG")
    ap.add_argument("catalogs", nargs="+")
    args = ap.parse_args()
    if args.queries and len(args.queries) != len(args.catalogs):
        ap.error("--queries: give one query catalog per CATALOG")
    for i, cat in enumerate(args.catalogs):
        emb, z, prog, split = _read(cat)
        train = split == "train"
        if args.queries:
            qe, qz, qp, qs = _read(args.queries[i])
            sets = [(f"{args.queries[i]} (all)", qe[qs != "none"], qz[qs != "none"], qp[qs != "none"])]
        else:
            sets = [(s, emb[split == s], z[split == s], prog[split == s]) for s in ("val", "test")]
        for name, qe, qz, qp in sets:
            top = np.argsort(-(qe @ emb[train].T), axis=1)[:, :K]
            signed = (np.median(z[train][top], axis=1) - qz) / (1 + qz)
            dz = np.abs(signed)
            lrg = qp == "lrg"
            print(f"{cat} {name}: n {len(qz)}, within 0.01 (1+z) {np.mean(dz < 0.01):.3f}, "
                  f"LRG {np.mean(dz[lrg] < 0.01):.3f} (n {int(lrg.sum())})")
            if args.by_z:
                for lo, hi in zip(Z_BINS[:-1], Z_BINS[1:], strict=True):
                    b = (qz >= lo) & (qz < hi)
                    if b.any():
                        print(f"    z {lo:.2f}-{hi:.2f}: n {int(b.sum())}, within "
                              f"{np.mean(dz[b] < 0.01):.3f}, median offset "
                              f"{np.median(signed[b]):+.4f}")


def _read(cat: str):
    """(unit vectors (N, E), redshift, programme, split ('none' where no spectrum vector))."""
    from galclip.data.splits import assign_splits
    from galclip.search.catalog import read_catalog_table, read_embeddings

    vectors, rows = read_embeddings(cat, "spectrum")
    t = read_catalog_table(cat, ["object_id", "redshift", "programme"]).to_pydict()
    z, prog = np.array(t["redshift"]), np.array(t["programme"])
    split = np.full(len(z), "none", dtype=object)
    split[rows] = assign_splits(np.array(t["object_id"]))[rows]
    emb = np.zeros((len(z), vectors.shape[1]), np.float32)
    emb[rows] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return emb, z, prog, split


if __name__ == "__main__":
    main()
