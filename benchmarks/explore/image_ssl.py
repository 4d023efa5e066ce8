"""Exploration behind the CPU image recipe (issue 13): which encoder + objective puts redshift
into frozen image embeddings without collapsing on a few thousand cutouts? k-NN (k = 64)
redshift R² / σ_NMAD on the held-out test split.

Cutouts are cropped to their central 96 px once (cached beside the dataset), then trained with a
plain loop. Modes:
  random      the encoder at initialisation
  supervised  the same encoder + a linear head trained with redshift labels (Huber, standardized z)
  simclr      NT-Xent between two physically augmented views (Stein et al. 2021 augmentations:
              symmetries of the square, ±shift px jitter, PSF blur, extra noise; no colour jitter)

  python benchmarks/explore/image_ssl.py --data runs/demo/data --mode simclr --steps 400
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

KEEP = 96  # px kept around the centre


def load(data: Path, cache: Path):
    from galclip.data import open_dataset
    from galclip.train.data import split_rows

    if cache.exists():
        d = np.load(cache)
        return {k: d[k] for k in d.files}
    ds = open_dataset(data, columns=["image"])
    z = open_dataset(data, verify=False).read_columns(["redshift"])["redshift"].astype(np.float32)
    out = {}
    for split in ("train", "test"):
        rows = split_rows(ds, split, ("image",))
        lo = (152 - KEEP) // 2
        out[f"{split}_img"] = np.stack([ds[int(r)]["image"][:, lo:lo + KEEP, lo:lo + KEEP] for r in rows])
        out[f"{split}_z"] = z[rows]
    np.savez(cache, **out)
    return out


def embed(encoder, img):
    encoder.eval()
    with torch.inference_mode():
        return np.concatenate([encoder(torch.tensor(img[i:i + 256]))["pooled"].numpy()
                               for i in range(0, len(img), 256)])


def score(encoder, d):
    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import redshift_metrics

    tr, te = embed(encoder, d["train_img"]), embed(encoder, d["test_img"])
    return redshift_metrics(d["test_z"], knn_predict(tr, d["train_z"], te, k=64))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--mode", choices=["random", "supervised", "simclr"], required=True)
    ap.add_argument("--encoder", default="image-conv-nano")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--shift", type=int, default=7)
    ap.add_argument("--psf", type=float, default=1.0)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--enc-set", nargs="*", default=[])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import yaml
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    from galclip.augment import ImageViews, augment_view
    from galclip.models import create_encoder

    torch.manual_seed(args.seed)
    over = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.enc_set)}
    enc = create_encoder(args.encoder, **over)
    d = load(args.data, args.data.parent / "img-central96.npz")
    aug = ImageViews(rot90_flip=True, psf_sigma_max=args.psf, noise_max=args.noise)
    size = enc.cfg.img_size
    t0 = time.time()
    if args.mode != "random":
        proj = SimCLRProjectionHead(enc.embed_dim, 512, 128)
        head = torch.nn.Linear(enc.embed_dim, 1)
        loss_fn = NTXentLoss(temperature=args.temperature)
        params = [*enc.parameters(), *proj.parameters(), *head.parameters()]
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
        zt = torch.tensor(d["train_z"])
        zm, zs = zt.mean(), zt.std()
        for step in range(args.steps):
            enc.train()
            idx = torch.randint(0, len(zt), (args.batch,))
            x = torch.tensor(d["train_img"][idx])
            if args.mode == "supervised":
                v = augment_view(x, size, args.shift, enc.band_scale, aug)
                loss = torch.nn.functional.huber_loss(head(enc(v)["pooled"])[:, 0], (zt[idx] - zm) / zs)
            else:
                v = torch.cat([augment_view(x, size, args.shift, enc.band_scale, aug) for _ in range(2)])
                p = proj(enc(v)["pooled"]).split(len(idx))
                loss = loss_fn(p[0], p[1])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 3.0)
            opt.step()
            sched.step()
            if step % 50 == 0:
                print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    m = score(enc, d)
    rec = {"mode": args.mode, "encoder": args.encoder, "enc_set": args.enc_set, "steps": args.steps,
           "batch": args.batch, "lr": args.lr, "temperature": args.temperature, "shift": args.shift,
           "train_s": round(time.time() - t0), **{k: round(v, 4) for k, v in m.items()}}
    print(json.dumps(rec))
    with open(args.data.parent / "image_ssl_results.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
