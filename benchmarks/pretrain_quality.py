"""Does self-supervised pretraining put redshift into the frozen embeddings?

Pretrains each encoder on the 'train' split of a dataset (``galclip.train.runner.train``;
rerunning resumes or reuses the run), embeds the 'train' and 'test' galaxies with the frozen
encoder (pooled feature), and scores k-NN (k = 64) redshift regression R² on the held-out test
galaxies, for the pretrained encoder and for a randomly initialized one of the same
architecture, and for PCA-32 of binned raw pixels (no network). As a ceiling for what the
architecture can draw from this many galaxies, the same encoder (random init) plus a linear head
is also trained *with* redshift labels on the same train split (``--supervised-steps``; MSE on
standardized z, AdamW, one-cycle lr) and scored on the same test galaxies. Target (issue 4):
spectrum R² >= 0.9; image: pretrained clearly above random.

  python benchmarks/pretrain_quality.py --data runs/sim --out runs/bench-pretrain
  python benchmarks/pretrain_quality.py --data runs/sim --out runs/bench-pretrain \
      --modalities spectrum --spectrum-set trainer.max_steps=200
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def embed(encoder, dataset, rows: np.ndarray, modality: str, batch_size: int = 64) -> np.ndarray:
    """Pooled embeddings ``(len(rows), D)`` of the given rows, in order (eval mode, no grad)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    encoder.eval()
    out = []
    loader = DataLoader(Subset(dataset, rows.tolist()), batch_size=batch_size, shuffle=False)
    with torch.inference_mode():
        for b in loader:
            args = (b["image"],) if modality == "image" else (b["spectrum_flux"], b["spectrum_ivar"])
            out.append(encoder(*args)["pooled"].float().numpy())
    return np.concatenate(out)


class RawPixels:
    """Reference point without any network: PCA-32 of binned pixels (fit on the train rows).

    Spectra: per-spectrum standardized flux (valid pixels), averaged in 20-pixel bins (389 values).
    Images: arcsinh-normalized (the encoder's constants) central 48 px, 4 x 4 binned (432 values).
    """

    pca_components = 32

    def eval(self) -> RawPixels:
        return self

    def __call__(self, *x) -> dict:
        import torch

        from galclip.models.image_encoder import ImageEncoderConfig, arcsinh_normalize
        from galclip.models.spectrum_encoder import standardize, valid_pixels

        if len(x) == 2:
            flux, ivar = x
            v = standardize(flux.float(), valid_pixels(flux, ivar))[0]
            return {"pooled": v[:, : v.shape[1] // 20 * 20].reshape(len(v), -1, 20).mean(-1)}
        img = arcsinh_normalize(x[0].float(), torch.tensor(ImageEncoderConfig().band_scale),
                                ImageEncoderConfig().arcsinh_divisor)
        c = img.shape[-1] // 2
        centre = img[..., c - 24:c + 24, c - 24:c + 24]                 # (B, bands, 48, 48)
        return {"pooled": torch.nn.functional.avg_pool2d(centre, 4).flatten(1)}


def splits(data: Path, modality: str, max_rows: int | None):
    """``(dataset of the modality's columns, redshift per row, train rows, test rows)``."""
    from galclip.data import open_dataset
    from galclip.modalities import input_columns
    from galclip.train.data import split_rows

    ds = open_dataset(data, columns=input_columns((modality,), with_id=False))
    z = open_dataset(data, verify=False).read_columns(["redshift"])["redshift"].astype(np.float32)
    rows = [split_rows(ds, split, (modality,), max_rows) for split in ("train", "test")]
    return ds, z, *rows


def knn_r2(encoder, data: Path, modality: str, k: int, max_rows: int | None) -> float:
    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import r2_score

    ds, z, train, test = splits(data, modality, max_rows)
    x_train, x_test = embed(encoder, ds, train, modality), embed(encoder, ds, test, modality)
    if isinstance(encoder, RawPixels):
        from sklearn.decomposition import PCA

        pca = PCA(RawPixels.pca_components, random_state=0).fit(x_train)
        x_train, x_test = pca.transform(x_train), pca.transform(x_test)
    return r2_score(z[test], knn_predict(x_train, z[train], x_test, k=k))


def supervised_r2(config: dict, data: Path, modality: str, steps: int, batch_size: int,
                  max_rows: int | None, lr: float = 1e-3, seed: int = 0) -> float:
    """Test R² of the encoder architecture ``config`` trained from scratch on redshift labels.

    The train rows are held in memory; each step draws a random batch. This is the supervised
    reference for the self-supervised k-NN figure, at the same data size.
    """
    import torch

    from galclip.eval.metrics import r2_score
    from galclip.modalities import input_columns
    from galclip.models import build_encoder

    ds, z, train, test = splits(data, modality, max_rows)

    def inputs(rows):
        rows_ = [ds[int(r)] for r in rows]
        return [torch.stack([torch.as_tensor(np.asarray(r[c], dtype=np.float32)) for r in rows_])
                for c in input_columns((modality,), with_id=False)]

    x_train, x_test = inputs(train), inputs(test)
    mu, sd = float(z[train].mean()), float(z[train].std())
    y = torch.from_numpy((z[train] - mu) / sd)
    torch.manual_seed(seed)
    enc = build_encoder(config)
    head = torch.nn.Linear(enc.embed_dim, 1)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    enc.train()
    for step in range(steps):
        idx = torch.randint(0, len(y), (batch_size,))
        pred = head(enc(*(x[idx] for x in x_train))["pooled"])[:, 0]
        loss = torch.nn.functional.mse_loss(pred, y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"supervised {modality} step {step}/{steps} loss {loss.item():.3f}", flush=True)
    enc.eval()
    with torch.inference_mode():
        pred = torch.cat([head(enc(*(x[i:i + 64] for x in x_test))["pooled"])[:, 0]
                          for i in range(0, len(test), 64)]).numpy()
    return r2_score(z[test], pred * sd + mu)


def check_no_leak(pretrain_data: Path, data: Path, modality: str) -> None:
    """Refuse to score on test galaxies that the encoder was pretrained on."""
    from galclip.data import open_dataset
    from galclip.train.data import split_rows

    seen, scored = (open_dataset(d, verify=False) for d in (pretrain_data, data))
    train_ids = seen.read_columns(["object_id"])["object_id"][split_rows(seen, "train", (modality,))]
    test_ids = scored.read_columns(["object_id"])["object_id"][split_rows(scored, "test", (modality,))]
    if np.intersect1d(train_ids, test_ids).size:
        raise SystemExit(f"{pretrain_data}: its train split shares galaxies with {data}'s test split")


def score(modality: str, args) -> dict:
    import torch

    from galclip.models import build_encoder, load_encoder
    from galclip.models.checkpoint import read_metadata
    from galclip.train.runner import train

    config = getattr(args, f"{modality}_config")
    overrides = getattr(args, f"{modality}_set")
    if args.pretrain_data:
        check_no_leak(args.pretrain_data, args.data, modality)
    t0 = time.time()
    path = train(f"pretrain-{modality}", args.pretrain_data or args.data, args.out / modality,
                 config, overrides)
    minutes = (time.time() - t0) / 60
    pretrained = load_encoder(path)
    torch.manual_seed(0)
    random_init = build_encoder(pretrained.config)
    return {"modality": modality, "config": config, "overrides": overrides,
            "steps": int(read_metadata(path)["pretrain_steps"]), "train_minutes_this_call": round(minutes, 1),
            "r2_pretrained": knn_r2(pretrained, args.data, modality, args.k, args.max_rows),
            "r2_random_init": knn_r2(random_init, args.data, modality, args.k, args.max_rows),
            "r2_raw_pixels_pca32": knn_r2(RawPixels(), args.data, modality, args.k, args.max_rows),
            "supervised_steps": args.supervised_steps,
            "r2_supervised": (supervised_r2(pretrained.config, args.data, modality, args.supervised_steps,
                                            args.supervised_batch, args.max_rows)
                              if args.supervised_steps else None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="dataset folder (e.g. galclip simulate output)")
    p.add_argument("--out", type=Path, required=True, help="folder for the pretraining runs")
    p.add_argument("--pretrain-data", type=Path, default=None,
                   help="pretrain on this dataset instead (its 'train' ids must not be --data's test ids)")
    p.add_argument("--modalities", nargs="+", default=["spectrum", "image"], choices=["spectrum", "image"])
    p.add_argument("--spectrum-config", default="spectrum-cpu")
    p.add_argument("--image-config", default="image-cpu")
    p.add_argument("--spectrum-set", nargs="*", default=[], metavar="key=value")
    p.add_argument("--image-set", nargs="*", default=[], metavar="key=value")
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--max-rows", type=int, default=None, help="cap on train/test rows scored")
    p.add_argument("--supervised-steps", type=int, default=1000,
                   help="steps of the supervised same-architecture reference (0: skip it)")
    p.add_argument("--supervised-batch", type=int, default=64)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = [score(m, args) for m in args.modalities]
    print(f"\nk-NN (k={args.k}) redshift R² on held-out test galaxies, frozen pooled embeddings")
    print(f"{'modality':<10}{'config':<16}{'steps':>7}{'pretrained':>12}{'random init':>13}"
          f"{'raw pixels (PCA-32)':>21}{'supervised (same arch)':>24}")
    for r in results:
        print(f"{r['modality']:<10}{r['config']:<16}{r['steps']:>7}{r['r2_pretrained']:>12.3f}"
              f"{r['r2_random_init']:>13.3f}{r['r2_raw_pixels_pca32']:>21.3f}"
              + (f"{r['r2_supervised']:>24.3f}" if r["r2_supervised"] is not None else f"{'-':>24}"))
    (args.out / "pretrain_quality.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
