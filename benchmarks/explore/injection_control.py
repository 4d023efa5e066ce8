"""What limits ``galclip outliers`` on planted image artefacts (satellite trails, saturated stars)?

``benchmarks/outlier_injection.py`` plants eight kinds of anomaly in a simulated survey; on the
CPU demo's model the embedding scores find trails (AUROC 0.82) and stars (0.66) worse than the
issue's 0.85. Two questions, on the same altered dataset (its ``injected`` column):

1. **Is it the data?** Controls built differently from the embedding:
   - *pixel statistics, no labels*: from each cutout's robust per-band noise (1.4826 MAD), the
     largest signal-to-noise outside the galaxy (r > 20 px; a star), and the fraction of pixels
     outside the galaxy above 3 sigma in all three bands at once (a trail crosses all bands);
   - *supervised probes* (labels; 5-fold stratified cross-validation, out-of-fold scores): a
     logistic regression on 14 pixel statistics, on the 128-d image embedding, and on the image
     backbone's pooled features. A probe that finds a kind easily says the information is
     there; a probe on the embedding that fails says the embedding does not keep it.
2. **A better score in the issue's spirit** (unsupervised, a k-NN rarity, only which space
   differs): rarity (mean cosine distance to the 10 nearest other galaxies, as
   ``galclip.eval.outliers``) in the backbone's pooled (pre-projection) features; *local* rarity,
   the largest over a galaxy's 5 x 5 final feature-map cells of the cell's k-NN distance to
   other galaxies' cells (an artefact is local; pooling averages it away); and rarity in the
   standardised pixel-statistics space.

    PYTHONPATH=src .venv/bin/python benchmarks/explore/injection_control.py \\
        --data runs/inject-seed11/data --model runs/demo/align/model.safetensors \\
        --catalog runs/inject-seed11/catalog --out runs/inject-seed11/control.json

Prints a Markdown table: AUROC / precision at the top 1 % per kind and detector. With 18
planted galaxies per kind one AUROC has a standard error of ~0.04: plant several draws
(``outlier_injection.py --seed``) and summarise their JSONs with ``--combine A.json B.json ...``
(mean AUROC and its range over the draws).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from outlier_injection import KINDS, auroc, precision_at  # noqa: E402

K = 10
OUTER_PX = 20


def pixel_features(img: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(n, 14) pixel statistics of (n, 3, H, W) cutouts, and the two label-free detectors."""
    n, b, h, w = img.shape
    flat = img.reshape(n, b, -1)
    med = np.median(flat, 2, keepdims=True)
    noise = 1.4826 * np.median(np.abs(flat - med), 2, keepdims=True) + 1e-9
    snr = ((flat - med) / noise).reshape(n, b, h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    outer = np.hypot(yy - h / 2, xx - w / 2) > OUTER_PX
    so = snr[:, :, outer]                                            # (n, 3, P_outer)
    peak = np.log10(np.maximum(so.max(2), 1.0))                      # (n, 3)
    all3 = (so > 3).all(1).mean(1)                                   # (n,)
    any5 = (so > 5).any(1).mean(1)
    plateau = (flat >= flat.max(2, keepdims=True) * (1 - 1e-6)).sum(2)  # saturated: flat top
    q99 = np.quantile(so, 0.99, axis=2)                              # (n, 3)
    feats = np.column_stack([peak, all3, any5, np.log1p(plateau), q99,
                             np.log10(noise[:, :, 0])])
    return feats, {"pixel: outer peak S/N": peak.max(1), "pixel: outer 3-band 3σ fraction": all3}


def backbone_outputs(model, images: np.ndarray, batch: int = 50):
    """(embeddings (n, E), pooled backbone features (n, D), feature-map cells (n, h w, C))."""
    import torch

    enc = model.image_encoder
    maps = []
    forward_features = enc.backbone.forward_features

    def keep(x):
        f = forward_features(x)
        maps.append(f.flatten(2).transpose(1, 2).float().numpy())
        return f
    enc.backbone.forward_features = keep
    emb, pooled = [], []
    with torch.no_grad():
        for lo in range(0, len(images), batch):
            out = enc(torch.tensor(images[lo:lo + batch], dtype=torch.float32))
            pooled.append(out["pooled"].numpy())
            emb.append(model.project_image(out).numpy())
    enc.backbone.forward_features = forward_features
    return np.concatenate(emb), np.concatenate(pooled), np.concatenate(maps)


def knn_rarity(x: np.ndarray, group: np.ndarray | None = None, k: int = K,
               cosine: bool = True) -> np.ndarray:
    """Mean distance (cosine, or Euclidean) of each row to its k nearest rows of *other*
    groups (default: each row its own group)."""
    import faiss

    if cosine:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    x = np.ascontiguousarray(x, np.float32)
    group = np.arange(len(x)) if group is None else group
    same = int(np.bincount(group).max())
    index = faiss.IndexFlatIP(x.shape[1]) if cosine else faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    s, p = index.search(x, k + same)
    d = 1 - s if cosine else np.sqrt(np.maximum(s, 0))
    d = np.sort(np.where(group[p] == group[:, None], np.inf, d), 1)[:, :k]
    return d.mean(1)


def probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities of a standardised, class-balanced logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced",
                                                             max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return cross_val_predict(clf, x, y, cv=folds, method="predict_proba")[:, 1]


def table(scores: dict[str, np.ndarray], kinds: np.ndarray, show: tuple[str, ...]) -> dict:
    out = {}
    for name, v in scores.items():
        out[name] = {}
        for kind in show:
            code = KINDS.index(kind) + 1
            v_k = v[kind] if isinstance(v, dict) else v
            sel = (kinds == 0) | (kinds == code)
            out[name][kind] = {"auroc": auroc(v_k[kinds == code], v_k[kinds == 0]),
                               "precision_top1pct": precision_at(v_k[sel], kinds[sel] == code)}
    return out


def combine(paths: list[str]) -> None:
    """Mean AUROC [min, max] over draws, per detector and kind."""
    runs = [json.loads(Path(f).read_text())["scores"] for f in paths]
    kinds = list(next(iter(runs[0].values())))
    print(f"| detector ({len(runs)} draws) | " + " | ".join(f"{k} AUROC mean [min, max]"
                                                         for k in kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for name in runs[0]:
        cells = []
        for k in kinds:
            a = np.array([r[name][k]["auroc"] for r in runs])
            cells.append(f"{a.mean():.3f} [{a.min():.3f}, {a.max():.3f}]")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="the altered dataset (outlier_injection.py)")
    p.add_argument("--model")
    p.add_argument("--catalog", help="its catalog (for the galclip scores)")
    p.add_argument("--out", help="JSON of the table")
    p.add_argument("--combine", nargs="+", metavar="JSON", help="summarise earlier runs' JSONs")
    args = p.parse_args()
    if args.combine:
        return combine(args.combine)
    if not (args.data and args.model and args.catalog and args.out):
        p.error("--data, --model, --catalog and --out are required (or --combine)")
    import galclip
    from galclip.data import open_dataset
    from galclip.eval.outliers import _quantile_of, score_catalog

    ds = open_dataset(args.data)
    cols = ds.read_columns(["object_id", "image", "injected"])
    img, kinds = np.asarray(cols["image"], np.float32), np.asarray(cols["injected"])
    feats, label_free = pixel_features(img)
    emb, pooled, cells = backbone_outputs(galclip.load_model(args.model), img)
    n, c = cells.shape[:2]
    cell_rarity = knn_rarity(cells.reshape(n * c, -1), np.repeat(np.arange(n), c))
    sc = score_catalog(args.catalog).columns
    at = {int(o): i for i, o in enumerate(sc["object_id"])}
    order = np.array([at[int(o)] for o in cols["object_id"]])
    scores: dict = {"galclip: mismatch_score": sc["mismatch_score"][order],
                    "galclip: rarity_image": sc["rarity_image"][order],
                    **label_free,
                    "rarity: backbone pooled features": _quantile_of(knn_rarity(pooled)),
                    "rarity: local (max over feature-map cells)":
                        _quantile_of(cell_rarity.reshape(n, c).max(1)),
                    "rarity: pixel statistics": _quantile_of(knn_rarity(
                        (feats - feats.mean(0)) / (feats.std(0) + 1e-9), cosine=False))}
    show = ("trail", "star", "missing_band")
    for name, x in (("probe (labels): pixel statistics", feats),
                    ("probe (labels): image embedding", emb),
                    ("probe (labels): backbone pooled features", pooled)):
        scores[name] = {}
        for kind in show:
            sel = (kinds == 0) | (kinds == KINDS.index(kind) + 1)
            v = np.full(len(kinds), np.nan)
            v[sel] = probe(x[sel], kinds[sel] != 0)
            scores[name][kind] = v
    res = table(scores, kinds, show)
    Path(args.out).write_text(json.dumps({"args": vars(args), "n": {k: int((kinds == i + 1).sum())
                                          for i, k in enumerate(KINDS)},
                                          "n_clean": int((kinds == 0).sum()), "scores": res},
                                         indent=1))
    print("| detector | " + " | ".join(f"{k} AUROC / P@1%" for k in show) + " |")
    print("|---|" + "---|" * len(show))
    for name, r in res.items():
        print(f"| {name} | " + " | ".join(f"{r[k]['auroc']:.3f} / {r[k]['precision_top1pct']:.2f}"
                                          for k in show) + " |")


if __name__ == "__main__":
    main()
