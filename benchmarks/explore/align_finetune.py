"""Exploration behind the CPU alignment recipe (issue 13), step 3: fine-tune the image backbone.

The frozen image features carry about what three catalogue fluxes know (k-NN redshift R² ≈ 0.43),
so heads alone cannot align much more. Here the conv image encoder trains end to end against the
cached, frozen spectrum side (spectrum backbone features from ``align_features.py``):

* ``--mode clip``: symmetric InfoNCE between the image embedding (backbone + MLP head) and the
  spectrum embedding (MLP head on the frozen pooled spectrum feature), plus ``--spec-self``
  (relational term keeping the spectrum embedding's neighbourhoods those of the pretrained one);
* ``--mode supervised``: the control — the same image backbone + a linear head trained with the
  redshift labels (Huber on standardized z), to show how much redshift these cutouts hold.

Augmentation: a random symmetry of the square and a ±``--jitter`` px crop of the 80 px cutout to
the encoder's 64 px (both conserve flux). Scores as ``align_heads.py`` (k-NN on embeddings).

    python benchmarks/explore/align_finetune.py --train runs/feat-sim0.npz --other runs/feat-sim1.npz \\
        --image-encoder runs/demo/pretrain-image/encoder.safetensors --mode clip --epochs 10
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from align_heads import mlp, relational, report, scores  # noqa: E402


def augment(img: torch.Tensor, jitter: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    c = (img.shape[-1] - size) // 2
    for x in img:
        dy, dx = rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)
        x = x[:, c + dy:c + dy + size, c + dx:c + dx + size]
        x = torch.rot90(x, int(rng.integers(4)), dims=(1, 2))
        out.append(x.flip(-1) if rng.random() < 0.5 else x)
    return torch.stack(out)


def centre(img: torch.Tensor, size: int) -> torch.Tensor:
    c = (img.shape[-1] - size) // 2
    return img[..., c:c + size, c:c + size]


class Model(nn.Module):
    def __init__(self, encoder: nn.Module, d_spec: int, dim: int, hidden: int, mode: str):
        super().__init__()
        self.encoder, self.mode = encoder, mode
        d = encoder.embed_dim
        self.img_head = mlp(d, hidden, dim) if mode == "clip" else nn.Linear(d, 1)
        self.spec_head = mlp(d_spec, hidden, dim)
        self.log_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def image(self, img: torch.Tensor) -> torch.Tensor:
        h = self.encoder(img)["pooled"]
        return F.normalize(self.img_head(h), dim=-1) if self.mode == "clip" else h

    def spectrum(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.spec_head(pooled), dim=-1)


def embed_all(model: Model, img: np.ndarray, spec: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    out_i, out_s = [], []
    with torch.inference_mode():
        for lo in range(0, len(img), 256):
            out_i.append(model.image(centre(torch.tensor(img[lo:lo + 256]), size)).numpy())
            out_s.append(model.spectrum(torch.tensor(spec[lo:lo + 256])).numpy())
    model.train()
    return np.concatenate(out_i), np.concatenate(out_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--other", required=True)
    p.add_argument("--image-encoder", help="pretrained encoder file (default: random init)")
    p.add_argument("--preset", default="image-conv-nano")
    p.add_argument("--mode", choices=["clip", "supervised"], default="clip")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4, help="heads (and backbone unless --backbone-lr)")
    p.add_argument("--backbone-lr", type=float, default=None)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--jitter", type=int, default=7)
    p.add_argument("--spec-self", type=float, default=0.0)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", default=None)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    from galclip.models import create_encoder, load_encoder

    d0, d1 = dict(np.load(args.train)), dict(np.load(args.other))
    enc = load_encoder(args.image_encoder) if args.image_encoder else create_encoder(args.preset)
    size = enc.cfg.img_size
    model = Model(enc, d0["spec_pooled"].shape[1], args.dim, args.hidden, args.mode)
    bb = list(model.encoder.parameters())
    rest = [q for n, q in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": bb, "lr": args.backbone_lr or args.lr},
                             {"params": rest, "lr": args.lr}], weight_decay=args.wd)
    train = np.flatnonzero(d0["split"] == "train")
    steps = args.epochs * (len(train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [args.backbone_lr or args.lr, args.lr],
                                                total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(args.seed)
    img_all, spec_all = torch.tensor(d0["img"]), torch.tensor(d0["spec_pooled"])
    teacher = F.normalize(spec_all, dim=-1)
    zmu, zsd = d0["redshift"][train].mean(), d0["redshift"][train].std()
    t0 = time.time()
    for ep in range(args.epochs):
        order = rng.permutation(train)
        for lo in range(0, len(order) - args.batch_size + 1, args.batch_size):
            rows = order[lo:lo + args.batch_size]
            x = augment(img_all[rows], args.jitter, size, rng)
            if args.mode == "clip":
                zi, zs = model.image(x), model.spectrum(spec_all[rows])
                logits = model.log_scale.clamp(max=np.log(100)).exp() * zi @ zs.T
                lab = torch.arange(len(rows))
                loss = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab))
                if args.spec_self:
                    loss = loss + args.spec_self * relational(zs, teacher[rows])
            else:
                pred = model.img_head(model.image(x))[:, 0]
                loss = F.huber_loss(pred, torch.tensor((d0["redshift"][rows] - zmu) / zsd))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {ep + 1}/{args.epochs} loss {loss.item():.3f} {time.time() - t0:.0f} s",
              file=sys.stderr, flush=True)
    res = {"args": vars(args), "train_s": round(time.time() - t0, 1),
           **scores(d0, d1, embed_all(model, d0["img"], d0["spec_pooled"], size),
                    embed_all(model, d1["img"], d1["spec_pooled"], size))}
    if args.mode == "supervised":
        model.eval()
        with torch.inference_mode():
            te = d0["split"] == "test"
            test_img = torch.tensor(d0["img"][te])
            pz = torch.cat([model.img_head(model.image(centre(test_img[i:i + 256], size)))[:, 0]
                            for i in range(0, int(te.sum()), 256)]).numpy() * zsd + zmu
        from galclip.eval.metrics import r2_score, sigma_nmad
        res["supervised_z_r2"] = round(r2_score(d0["redshift"][te], pz), 4)
        res["supervised_z_nmad"] = round(sigma_nmad(d0["redshift"][te], pz), 4)
    report(res, args.log)


if __name__ == "__main__":
    main()
