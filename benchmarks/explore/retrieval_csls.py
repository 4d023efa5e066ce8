"""Cross-modal retrieval with CSLS (hubness-corrected) scores vs plain cosine (issue 13).

CSLS (Conneau et al. 2018): score(x, y) = 2 cos(x, y) - r(x) - r(y), where r is a galaxy's mean
similarity to its k nearest galaxies of the other modality in a reference population (here the
train split). Ranks each counterpart in one pool of 1000 val + test galaxies (k = 0: cosine).

    python benchmarks/explore/retrieval_csls.py runs/demo/catalog runs/demo/data
"""
from __future__ import annotations

import sys

import numpy as np

from galclip.data.dataset import open_dataset
from galclip.search.catalog import read_embeddings
from galclip.train.data import split_rows


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def hub(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    """Mean similarity of each row of q to its k nearest rows of g."""
    return np.sort(q @ g.T, axis=1)[:, -k:].mean(1)


def main() -> None:
    cat, data = sys.argv[1], sys.argv[2]
    img, rows_i = read_embeddings(cat, "image")
    spec, rows_s = read_embeddings(cat, "spectrum")
    assert (rows_i == rows_s).all()
    img, spec = unit(img), unit(spec)
    ds = open_dataset(data, columns=["object_id"])
    pairs = ("image", "spectrum")
    held = np.sort(np.concatenate([split_rows(ds, "val", pairs), split_rows(ds, "test", pairs)]))
    pos = {r: i for i, r in enumerate(rows_i)}
    h = np.array([pos[r] for r in held])
    t = np.array([pos[r] for r in split_rows(ds, "train", pairs)])
    h = h[np.random.default_rng(0).permutation(len(h))[:1000]]
    for k in (0, 5, 10, 20, 50):
        for name, a, b in (("image->spectrum", img, spec), ("spectrum->image", spec, img)):
            sim = a[h] @ b[h].T
            if k:
                sim = 2 * sim - hub(a[h], b[t], k)[:, None] - hub(b[h], a[t], k)[None, :]
            ranks = (sim >= np.diagonal(sim)[:, None]).sum(1)
            print(f"k {k:2d} {name}: median rank {np.median(ranks):.1f}, R@10 {(ranks <= 10).mean():.3f}")


if __name__ == "__main__":
    main()
