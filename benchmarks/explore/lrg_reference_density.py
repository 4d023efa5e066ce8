"""Is the k-NN redshift of high-z LRGs limited by how many simulated LRGs the reference holds?

The demo's spectrum embedding reads simulated test LRGs at z > 0.85 low (k = 16: median
Δz/(1+z) −0.026, a quarter within 0.01) and real DESI LRGs at 0.44–1.03 lower still. The
reference (the train split) holds ~120 LRGs above z 0.87. This script adds a second simulated
LRG-only survey, embedded with the same model, to the reference — no training changes — and
compares the k-NN redshift of the demo's test LRGs per redshift bin, and of the real DESI
spectra of benchmarks/sim_to_real.py, with and without it.

Usage: python benchmarks/explore/lrg_reference_density.py --demo RUN --extra CATALOG [--k 16]
  (CATALOG: `galclip simulate --programmes lrg --seed 11` embedded with RUN's model)
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sim_to_real import REAL, real_spectra  # noqa: E402

BINS = ((0.4, 0.55), (0.55, 0.7), (0.7, 0.85), (0.85, 1.2))


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def knn_z(q: np.ndarray, pool: np.ndarray, zpool: np.ndarray, k: int) -> np.ndarray:
    top = np.argsort(-(q @ pool.T), axis=1)[:, :k]
    return np.median(zpool[top], axis=1)


def main() -> None:
    from galclip.data import open_dataset
    from galclip.data.splits import assign_splits
    from galclip.search.api import Catalog
    from galclip.search.catalog import read_embeddings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", required=True)
    ap.add_argument("--extra", required=True)
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    demo = Path(args.demo)
    cols = open_dataset(demo / "data").read_columns(["object_id", "redshift", "programme"])
    vec, rows = read_embeddings(demo / "catalog", "spectrum")
    vec, z, prog = unit(vec), cols["redshift"][rows].astype(float), cols["programme"][rows]
    split = assign_splits(cols["object_id"][rows])
    tr, te = split == "train", split == "test"
    xv, xrows = read_embeddings(args.extra, "spectrum")
    extra_dir = Path(Catalog(args.extra).manifest["dataset"]["path"])
    xz = open_dataset(extra_dir).read_columns(["redshift"])["redshift"][xrows].astype(float)
    pools = {"train split": (vec[tr], z[tr]),
             f"+ {len(xz)} LRGs": (np.vstack([vec[tr], unit(xv)]), np.concatenate([z[tr], xz]))}
    for name, (_, pz) in pools.items():
        print(f"reference {name}: {len(pz)} spectra, {int((pz > 0.85).sum())} above z 0.85")
    lrg = te & (prog == "lrg")
    print(f"| simulated test LRGs (k = {args.k}) | " + " | ".join(pools) + " |")
    print("|---|" + "---|" * len(pools))
    preds = {n: knn_z(vec[lrg], pv, pz, args.k) for n, (pv, pz) in pools.items()}
    for lo, hi in BINS:
        m = (z[lrg] >= lo) & (z[lrg] < hi)
        cells = []
        for n in pools:
            dz = (preds[n][m] - z[lrg][m]) / (1 + z[lrg][m])
            cells.append(f"median {np.median(dz):+.4f}, within 0.01 {np.mean(np.abs(dz) < 0.01):.2f}")
        print(f"| z {lo}–{hi} (n {int(m.sum())}) | " + " | ".join(cells) + " |")
    cat = Catalog(demo / "catalog")
    real = [s for s in real_spectra(Path(args.real)) if s["programme"] in ("BGS", "LRG", "coadd")]
    rv = unit(np.stack([np.asarray(cat.embed("spectrum", s["flux"], s["ivar"])).reshape(-1)
                        for s in real]))
    rz = np.array([s["z"] for s in real])
    out = {n: knn_z(rv, pv, pz, args.k) for n, (pv, pz) in pools.items()}
    print("| real spectrum | z | " + " | ".join(pools) + " |")
    print("|---|---|" + "---|" * len(pools))
    for i, s in enumerate(real):
        print(f"| {s['programme']} | {rz[i]:.3f} | " + " | ".join(f"{out[n][i]:.3f}" for n in pools) + " |")
    for n in pools:
        ok = np.abs(out[n] - rz) / (1 + rz) < 0.01
        print(f"{n}: real within 0.01(1+z): {int(ok.sum())} of {len(rz)}")


if __name__ == "__main__":
    main()
