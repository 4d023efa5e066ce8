"""Exploration behind the CPU alignment recipe (issue 13), step 2: CLIP heads on cached features.

Reads the .npz files of ``align_features.py`` (the demo's simulation and an independent one),
trains the two projection heads with the symmetric InfoNCE loss on the training split of the
first, and scores what the issue's targets ask:

* zero-shot k-NN (k = 64, reference = training split) redshift R², σ_NMAD and the mean R² of
  the four physical properties on the test split, from the image and the spectrum embedding;
* cross-modal median rank in pools of 1000 held-out galaxies (val + test of the first set) and in
  pools of 1000 galaxies of the independent set, both directions.

Variants (``--head``): ``xattn`` (the library's cross-attention ProjectionHead over all tokens),
``mlp`` (an MLP on the pooled feature). ``--spec-self w`` adds a relational term that keeps the
aligned spectrum embedding's neighbourhoods those of the pretrained spectrum features (a KL between
the two batch similarity distributions; label-free).

    python benchmarks/explore/align_heads.py --train runs/feat-sim0.npz --other runs/feat-sim1.npz \\
        --head mlp --epochs 60
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PROPS = ["log_mstar", "logz_mw", "tage_mw", "log_ssfr"]


def load(path: str) -> dict[str, np.ndarray]:
    d = np.load(path)
    return {k: d[k] for k in d.files if k not in ("img", "flux", "ivar")}


def mlp(d_in: int, hidden: int, d_out: int, depth: int = 2) -> nn.Module:
    layers: list[nn.Module] = [nn.LayerNorm(d_in)]
    for i in range(depth - 1):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.GELU()]
    layers.append(nn.Linear(hidden if depth > 1 else d_in, d_out))
    return nn.Sequential(*layers)


class Heads(nn.Module):
    def __init__(self, kind: str, d_img: int, d_spec: int, dim: int, hidden: int, depth: int):
        super().__init__()
        from galclip.models.heads import ProjectionHead

        self.kind = kind
        if kind == "xattn":
            self.img = ProjectionHead(d_img, embed_dim=dim, num_heads=4)
            self.spec = ProjectionHead(d_spec, embed_dim=dim, num_heads=4)
        else:
            self.img, self.spec = mlp(d_img, hidden, dim, depth), mlp(d_spec, hidden, dim, depth)
        self.log_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))

    def embed(self, d: dict, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "xattn":
            zi = self.img(torch.tensor(d["img_tokens"][rows]).float())
            zs = self.spec(torch.tensor(d["spec_tokens"][rows]).float(), torch.tensor(d["spec_mask"][rows]))
        else:
            zi = self.img(torch.tensor(d["img_pooled"][rows]))
            zs = self.spec(torch.tensor(d["spec_pooled"][rows]))
        return F.normalize(zi, dim=-1), F.normalize(zs, dim=-1)


def embed_all(heads: Heads, d: dict) -> tuple[np.ndarray, np.ndarray]:
    heads.eval()
    out_i, out_s = [], []
    with torch.inference_mode():
        for lo in range(0, len(d["redshift"]), 512):
            zi, zs = heads.embed(d, np.arange(lo, min(lo + 512, len(d["redshift"]))))
            out_i.append(zi.numpy())
            out_s.append(zs.numpy())
    heads.train()
    return np.concatenate(out_i), np.concatenate(out_s)


def scores(d0: dict, d1: dict, e0: tuple, e1: tuple) -> dict[str, float]:
    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import r2_score, sigma_nmad
    from galclip.retrieval_metrics import pooled_ranks

    tr, te = d0["split"] == "train", d0["split"] == "test"
    held = d0["split"] != "train"
    out = {}
    for name, e in (("image", e0[0]), ("spectrum", e0[1])):
        z = knn_predict(e[tr], d0["redshift"][tr], e[te])
        out[f"{name}_z_r2"] = r2_score(d0["redshift"][te], z)
        out[f"{name}_z_nmad"] = sigma_nmad(d0["redshift"][te], z)
        out[f"{name}_props_r2"] = float(np.mean([r2_score(d0[p][te], knn_predict(e[tr], d0[p][tr], e[te]))
                                                 for p in PROPS]))
    if e0[0].shape != e0[1].shape:  # a supervised control has no shared space
        return {k: round(float(v), 4) for k, v in out.items()}
    out["rank_i2s"] = float(np.median(pooled_ranks(e0[0][held], e0[1][held])))
    out["rank_s2i"] = float(np.median(pooled_ranks(e0[1][held], e0[0][held])))
    out["rank_i2s_other"] = float(np.median(pooled_ranks(e1[0], e1[1])))
    out["rank_s2i_other"] = float(np.median(pooled_ranks(e1[1], e1[0])))
    return {k: round(float(v), 4) for k, v in out.items()}


def report(res: dict, log: str | None) -> None:
    """Print one result as JSON and append it to ``log`` (one JSON line) when given."""
    print(json.dumps(res))
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(res) + "\n")


def relational(student: torch.Tensor, teacher: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """KL(teacher || student) between the rows of the two batch cosine-similarity softmaxes."""
    eye = torch.eye(len(student), dtype=torch.bool)
    s = (student @ student.T / tau).masked_fill(eye, -1e4)
    t = (teacher @ teacher.T / tau).masked_fill(eye, -1e4)
    return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--other", required=True)
    p.add_argument("--head", choices=["xattn", "mlp"], default="mlp")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--spec-self", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", default=None, help="append the result as one JSON line here")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    d0, d1 = load(args.train), load(args.other)
    train = np.flatnonzero(d0["split"] == "train")
    heads = Heads(args.head, d0["img_pooled"].shape[1], d0["spec_pooled"].shape[1], args.dim,
                  args.hidden, args.depth)
    opt = torch.optim.AdamW(heads.parameters(), lr=args.lr, weight_decay=args.wd)
    steps = args.epochs * (len(train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.05)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    teacher = F.normalize(torch.tensor(d0["spec_pooled"]), dim=-1)
    for _ in range(args.epochs):
        order = rng.permutation(train)
        for lo in range(0, len(order) - args.batch_size + 1, args.batch_size):
            rows = order[lo:lo + args.batch_size]
            zi, zs = heads.embed(d0, rows)
            logits = heads.log_scale.clamp(max=np.log(100)).exp() * zi @ zs.T
            lab = torch.arange(len(rows))
            loss = 0.5 * (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab))
            if args.spec_self:
                loss = loss + args.spec_self * relational(zs, teacher[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - t0
    res = {"args": vars(args), "train_s": round(train_s, 1),
           **scores(d0, d1, embed_all(heads, d0), embed_all(heads, d1))}
    report(res, args.log)


if __name__ == "__main__":
    main()
