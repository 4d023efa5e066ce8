"""The control behind the retrieval target (issue 13): how well can *any* model match a cutout to
its spectrum on this data? A differently built, supervised matcher with the pairing labels:

* image side: aperture fluxes measured from the pixels (g, r, z in circles of 2-32 px), asinh;
* spectrum side: the ivar-weighted mean flux in ``--chunks`` equal log-λ chunks, asinh;
* an MLP trained on the training pairs predicts the image features from the spectrum ones; each
  held-out pair is ranked by the Mahalanobis distance of the prediction residual (covariance of
  the training residuals), in pools of 1000, both directions.

If this matcher cannot reach a median rank of 10, the features the two modalities share on this
simulation do not pin a galaxy down to 1 in 100, whatever the encoder.

    python benchmarks/explore/retrieval_control.py --train runs/feat-sim0.npz --other runs/feat-sim1.npz
"""
from __future__ import annotations

import argparse
import json

import numpy as np

RADII = [2.0, 4.0, 8.0, 16.0, 32.0]


def aperture_features(img: np.ndarray) -> np.ndarray:
    n = img.shape[-1]
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(yy, xx)
    cols = [np.einsum("bchw,hw->bc", img, (r <= rad).astype(np.float32)) for rad in RADII]
    return np.arcsinh(np.concatenate(cols, axis=1) / 0.1)


def chunk_features(flux: np.ndarray, ivar: np.ndarray, chunks: int) -> np.ndarray:
    f, w = flux.reshape(len(flux), chunks, -1), ivar.reshape(len(ivar), chunks, -1)
    mean = (f * w).sum(-1) / np.maximum(w.sum(-1), 1e-12)
    return np.arcsinh(mean / 0.1)


def ranks(pred: np.ndarray, target: np.ndarray, prec: np.ndarray, pool: int = 1000, seed: int = 0):
    order = np.random.default_rng(seed).permutation(len(pred))
    out_q, out_g = [], []
    for lo in range(0, len(pred) - pool + 1, pool):
        p = order[lo:lo + pool]
        diff = pred[p][:, None, :] - target[p][None, :, :]         # (spectrum i, image j, F)
        d = np.einsum("ijf,fg,ijg->ij", diff, prec, diff)
        true = np.diag(d)
        out_q.append((d < true[:, None]).sum(1) + 1)   # spectrum -> image
        out_g.append((d < true[None, :]).sum(0) + 1)   # image -> spectrum
    return np.concatenate(out_g), np.concatenate(out_q)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--other", required=True)
    p.add_argument("--chunks", type=int, default=16)
    args = p.parse_args()
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    d0, d1 = np.load(args.train), np.load(args.other)
    feats = [(chunk_features(d["flux"], d["ivar"], args.chunks), aperture_features(d["img"]))
             for d in (d0, d1)]
    split = d0["split"]
    tr, held = split == "train", split != "train"
    xs, ys = StandardScaler().fit(feats[0][0][tr]), StandardScaler().fit(feats[0][1][tr])
    X, Y = xs.transform(feats[0][0]), ys.transform(feats[0][1])
    reg = MLPRegressor(hidden_layer_sizes=(256, 256), alpha=1e-3, max_iter=500, early_stopping=True,
                       random_state=0).fit(X[tr], Y[tr])
    resid = reg.predict(X[tr]) - Y[tr]
    val = split == "val"
    resid_val = reg.predict(X[val]) - Y[val]
    prec = np.linalg.inv(np.cov(resid_val.T) + 1e-6 * np.eye(Y.shape[1]))
    out = {"train_resid_rms": float(np.sqrt((resid ** 2).mean())),
           "val_resid_rms": float(np.sqrt((resid_val ** 2).mean()))}
    r_i2s, r_s2i = ranks(reg.predict(X[held]), Y[held], prec)
    out.update(rank_i2s=float(np.median(r_i2s)), rank_s2i=float(np.median(r_s2i)))
    X1, Y1 = xs.transform(feats[1][0]), ys.transform(feats[1][1])
    r_i2s, r_s2i = ranks(reg.predict(X1), Y1, prec)
    out.update(rank_i2s_other=float(np.median(r_i2s)), rank_s2i_other=float(np.median(r_s2i)))
    print(json.dumps({"chunks": args.chunks, **{k: round(v, 3) for k, v in out.items()}}))


if __name__ == "__main__":
    main()
