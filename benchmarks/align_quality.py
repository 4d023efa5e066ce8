"""Quality of cross-modal alignment on simulated data (issue 5).

Aligns pretrained encoders with ``galclip align`` (resumes/reuses ``--out``), then on held-out
galaxies (the val and test splits: never trained on) prints

* cross-modal retrieval in pools of ``--pool`` galaxies: R@1/5/10 and median rank, both
  directions (target: median rank <= 20 in a pool of 1000; chance is 500);
* k-NN (k = 64) redshift from image embeddings: the aligned CLIP image embedding vs the
  unaligned pretrained image encoder (its pooled class token), fitted on training galaxies;
  also spectrum -> image (neighbours among training spectra, queried with images).

    .venv/bin/galclip simulate --n 6000 --out runs/sim --seed 0
    .venv/bin/galclip pretrain image --config image-cpu --data runs/sim --out runs/pre-img
    .venv/bin/galclip pretrain spectrum --config spectrum-cpu --data runs/sim --out runs/pre-spec
    .venv/bin/python benchmarks/align_quality.py --data runs/sim --out runs/bench-align \\
        --image-encoder runs/pre-img/encoder.safetensors \\
        --spectrum-encoder runs/pre-spec/encoder.safetensors [key=value overrides]

A model aligned elsewhere (e.g. the demo's) is scored with ``--model``; on an independent
simulation that no stage trained on, ``--pool-rows all`` draws the retrieval pools from every row
(the k-NN reference set stays its train split):

    .venv/bin/galclip simulate --n 1500 --out runs/sim-seed1 --seed 1
    .venv/bin/python benchmarks/align_quality.py --data runs/sim-seed1 --pool-rows all \\
        --model runs/demo/align/model.safetensors \\
        --image-encoder runs/demo/pretrain-image/encoder.safetensors \\
        --spectrum-encoder runs/demo/pretrain-spectrum/encoder.safetensors
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def held_out_and_train(ds, max_train: int, pool_rows: str = "heldout") -> tuple[np.ndarray, np.ndarray]:
    """Rows to pool (val + test, or every row of a set no stage trained on) and k-NN train rows."""
    from galclip.train.data import split_rows

    pairs = ("image", "spectrum")
    held = np.sort(np.concatenate([split_rows(ds, "val", pairs), split_rows(ds, "test", pairs)]))
    if pool_rows == "all":
        held = np.arange(len(ds))
    return held, split_rows(ds, "train", pairs)[:max_train]


def pooled_image_features(encoder, ds, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The unaligned baseline: the pretrained image encoder's pooled feature per row."""
    import torch
    from torch.utils.data import DataLoader, Subset

    encoder.eval()
    out = []
    with torch.inference_mode():
        for batch in DataLoader(Subset(ds, rows.tolist()), batch_size=batch_size, shuffle=False):
            out.append(encoder(batch["image"].float())["pooled"].float().numpy())
    return np.concatenate(out)


def knn_redshift(train_x, train_z, query_x, query_z) -> dict[str, float]:
    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import r2_score, sigma_nmad

    pred = knn_predict(train_x, train_z, query_x, k=64)
    return {"R2": r2_score(query_z, pred), "sigma_nmad": sigma_nmad(query_z, pred)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", help="alignment run folder (reused if finished); not with --model")
    p.add_argument("--model", help="an aligned model file to score instead of aligning")
    p.add_argument("--pool-rows", choices=["heldout", "all"], default="heldout",
                   help="retrieval pools from the val+test rows, or from every row (a set no stage saw)")
    p.add_argument("--config", default="cpu")
    p.add_argument("--image-encoder", required=True, help="pretrained image encoder file")
    p.add_argument("--spectrum-encoder", required=True, help="pretrained spectrum encoder file")
    p.add_argument("--pool", type=int, default=1000)
    p.add_argument("--max-train-knn", type=int, default=4000, help="training galaxies for k-NN")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()

    from torch.utils.data import Subset

    from galclip.data import open_dataset
    from galclip.models import load_encoder
    from galclip.models.clip import load_model
    from galclip.models.inference import embed_dataset
    from galclip.retrieval_metrics import retrieval_metrics
    from galclip.train.runner import train
    from galclip.train.schema import train_config

    cfg = train_config("align", args.config, [*args.overrides,
                                                f"model.image_checkpoint={args.image_encoder}",
                                                f"model.spectrum_checkpoint={args.spectrum_encoder}"])
    if bool(args.model) == bool(args.out):
        p.error("give exactly one of --out (align here) and --model (score an aligned model)")
    t0 = time.time()
    model = load_model(args.model or train("align", args.data, args.out, cfg))
    train_s = time.time() - t0 if not args.model else 0.0

    ds = open_dataset(args.data, columns=["object_id", "image", "spectrum_flux", "spectrum_ivar"])
    held, train = held_out_and_train(ds, args.max_train_knn, args.pool_rows)
    z = open_dataset(args.data, verify=False).read_columns(["redshift"])["redshift"]
    t0 = time.time()
    emb_held = embed_dataset(model, Subset(ds, held.tolist()), batch_size=64)
    emb_train = embed_dataset(model, Subset(ds, train.tolist()), batch_size=64)
    pre = load_encoder(args.image_encoder)
    base_held, base_train = (pooled_image_features(pre, ds, r) for r in (held, train))
    embed_s = time.time() - t0
    q = ~np.isin(held, train)

    result = {
        "data": str(args.data), "model": args.model or str(args.out), "pool_rows": args.pool_rows,
        "n_pooled": len(held), "n_knn_train": len(train),
        "align_seconds": round(train_s, 1), "embed_seconds": round(embed_s, 1),
        "retrieval": retrieval_metrics(emb_held["image_embedding"], emb_held["spectrum_embedding"],
                                       pool_size=args.pool),
        # k-NN is queried with pooled rows outside its reference (train) rows: no galaxy finds itself
        "knn_redshift": {
            "aligned_image": knn_redshift(emb_train["image_embedding"], z[train],
                                          emb_held["image_embedding"][q], z[held][q]),
            "pretrained_image_unaligned": knn_redshift(base_train, z[train], base_held[q], z[held][q]),
            "spectrum_to_image": knn_redshift(emb_train["spectrum_embedding"], z[train],
                                              emb_held["image_embedding"][q], z[held][q]),
            "aligned_spectrum": knn_redshift(emb_train["spectrum_embedding"], z[train],
                                             emb_held["spectrum_embedding"][q], z[held][q]),
        },
        "logit_scale": float(model.logit_scale().detach()),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
