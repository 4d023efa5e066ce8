"""Speed of the evaluation building blocks on embedding-sized synthetic arrays.

Prints, for N training and 1000 query rows of E-dimensional embeddings: k-NN (k = 64) fit +
predict time, MLP probe (64-64, dropout 0.1) fit time for the 5 properties, and its epochs.

    .venv/bin/python benchmarks/eval_speed.py --n 2000 8000 --dim 128
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, 5))
    x = y @ rng.normal(size=(5, dim)) + rng.normal(0, 1.0, (n, dim))
    return x.astype(np.float32), y


def main() -> None:
    import torch

    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import r2_score
    from galclip.eval.probes import MLPProbe, ProbeConfig

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 8000])
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}")
    print("| N train | k-NN fit+predict (1000 queries) | probe fit | k-NN R² | probe R² |")
    print("|---|---|---|---|---|")
    for n in args.n:
        x, y = synthetic(n + 1000, args.dim, 0)
        t = time.perf_counter()
        pk = knn_predict(x[:n], y[:n], x[n:], k=64)
        t_knn = time.perf_counter() - t
        t = time.perf_counter()
        pp = MLPProbe("regression", ProbeConfig()).fit(x[:n], y[:n]).predict(x[n:])
        t_probe = time.perf_counter() - t
        r2k = np.mean([r2_score(y[n:, j], pk[:, j]) for j in range(5)])
        r2p = np.mean([r2_score(y[n:, j], pp[:, j]) for j in range(5)])
        print(f"| {n} | {t_knn:.2f} s | {t_probe:.1f} s | {r2k:.3f} | {r2p:.3f} |")


if __name__ == "__main__":
    main()
