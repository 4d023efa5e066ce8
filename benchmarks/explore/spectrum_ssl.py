"""Exploration behind the CPU spectrum recipe (issue 13): which encoder + objective puts redshift
into frozen spectrum embeddings? k-NN (k = 64) redshift R² / σ_NMAD on the held-out test split.

Spectra are rebinned onto the encoder's log-λ grid once (cached beside --out), then trained with
a plain loop for a fixed number of steps. Modes:
  random      the encoder at initialisation (no training)
  supervised  the same encoder + a linear head trained with the redshift labels (Huber on
              standardized z): the architecture's ceiling at this data size
  contrast    NT-Xent between two noise/span-dropout views (no labels)
  equi        contrast + the redshift-equivariance term (no labels)
  shiftneg    contrast + each spectrum redshifted by ±[min_shift, max_shift] bins as an extra
              negative, every view losing 0..edge_mask bins at each end (no labels; tried and
              not taken: see benchmarks/RESULTS.md)

  python benchmarks/explore/spectrum_ssl.py --data runs/demo/data --mode equi --steps 400 \
      [--other runs/sim-seed1]   # also scored on a simulation nothing trained on
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def shift_negative_objective(embed_dim: int, cfg: dict, bin_dlnlam: float):
    """The ``shiftneg`` variant of the library's contrastive objective (kept here, not in the library)."""
    import torch.nn.functional as F

    from galclip.augment import noise_view, shift_view, span_dropout
    from galclip.train.spectrum_contrastive import SpectrumContrastiveObjective

    def edge_dropout(w, max_bins):
        B, L = w.shape
        lo, hi = (torch.randint(0, max_bins + 1, (B, 1)) for _ in range(2))
        pos = torch.arange(L)[None]
        return torch.where((pos < lo) | (pos >= L - hi), torch.zeros_like(w), w)

    class ShiftNegatives(SpectrumContrastiveObjective):
        def views(self, flux, ivar):
            f, w = noise_view(flux, ivar, self.cfg["noise_max"])
            return f, edge_dropout(span_dropout(w, self.cfg["n_spans"], self.cfg["span_len"]),
                                   self.cfg["edge_mask"])

        def forward(self, encode, flux, ivar):
            c, B = self.cfg, flux.shape[0]
            size = torch.randint(c["min_shift"], c["max_shift"] + 1, (B,))
            shift = size * torch.where(torch.rand(B) < 0.5, -1, 1)
            views = [self.views(flux, ivar), self.views(flux, ivar),
                     self.views(*shift_view(flux, ivar, shift))]
            pooled = encode(torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views]))["pooled"]
            q0, q1, neg = (F.normalize(self.projection(x), dim=1) for x in pooled.float().split(B))
            target, t = torch.arange(B), c["temperature"]
            a = torch.cat([q0 @ q1.T, q0 @ neg.T], 1) / t
            b = torch.cat([q1 @ q0.T, q1 @ neg.T], 1) / t
            loss = 0.5 * (F.cross_entropy(a, target) + F.cross_entropy(b, target))
            return {"contrastive": loss, "loss": loss}

    return ShiftNegatives(embed_dim, cfg, bin_dlnlam)


def load(data: Path, encoder, cache: Path):
    from galclip.data import open_dataset
    from galclip.train.data import split_rows

    if cache.exists():
        d = np.load(cache)
        return {k: d[k] for k in d.files}
    ds = open_dataset(data, columns=["spectrum_flux", "spectrum_ivar"])
    z = open_dataset(data, verify=False).read_columns(["redshift"])["redshift"].astype(np.float32)
    out = {}
    for split in ("train", "test"):
        rows = split_rows(ds, split, ("spectrum",))
        fl, iv = [], []
        for i in range(0, len(rows), 256):
            b = [ds[int(r)] for r in rows[i:i + 256]]
            f = torch.tensor(np.stack([x["spectrum_flux"] for x in b]))
            w = torch.tensor(np.stack([x["spectrum_ivar"] for x in b]))
            lf, lw = encoder.rebin(f, w)
            fl.append(lf.numpy()), iv.append(lw.numpy())
        out[f"{split}_flux"], out[f"{split}_ivar"] = np.concatenate(fl), np.concatenate(iv)
        out[f"{split}_z"] = z[rows]
    np.savez(cache, **out)
    return out


def embed(encoder, flux, ivar):
    encoder.eval()
    with torch.inference_mode():
        return np.concatenate([encoder.forward_rebinned(torch.tensor(flux[i:i + 256]),
                                                        torch.tensor(ivar[i:i + 256]))["pooled"].numpy()
                               for i in range(0, len(flux), 256)])


def score(encoder, d):
    from galclip.eval.knn import knn_predict
    from galclip.eval.metrics import redshift_metrics

    tr, te = embed(encoder, d["train_flux"], d["train_ivar"]), embed(encoder, d["test_flux"], d["test_ivar"])
    return redshift_metrics(d["test_z"], knn_predict(tr, d["train_z"], te, k=64))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--mode", choices=["random", "supervised", "contrast", "equi", "shiftneg"], required=True)
    ap.add_argument("--encoder", default="spectrum-conv-nano")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--set", nargs="*", default=[], help="objective overrides key=value")
    ap.add_argument("--enc-set", nargs="*", default=[], help="encoder overrides key=value")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--other", type=Path, nargs="*", default=[],
                    help="also score on these sets (a simulation nothing trained on; k-NN "
                         "reference = its own train split)")
    args = ap.parse_args()
    import yaml

    from galclip.models import create_encoder
    from galclip.train.spectrum_contrastive import SpectrumContrastiveObjective, bin_width_lnlam

    torch.manual_seed(args.seed)
    over = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.enc_set)}
    enc = create_encoder(args.encoder, **over)
    d = load(args.data, enc, args.data.parent / f"spec-logbins-{enc.cfg.log_bins}.npz")
    t0 = time.time()
    if args.mode != "random":
        cfg = {"temperature": 0.1, "proj_dim": 128, "proj_hidden": 512, "noise_max": 1.0, "n_spans": 4,
               "span_len": 30, "equivariance_weight": 1.0 if args.mode == "equi" else 0.0,
               "max_shift": 100, "shift_scale": 0.05}
        cfg.update({k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
        if args.mode == "shiftneg":
            cfg = {"min_shift": 8, "edge_mask": 100, **cfg}
            obj = shift_negative_objective(enc.embed_dim, cfg, bin_width_lnlam(enc))
        else:
            obj = SpectrumContrastiveObjective(enc.embed_dim, cfg, bin_width_lnlam(enc))
        head = torch.nn.Linear(enc.embed_dim, 1)
        params = [*enc.parameters(), *obj.parameters(), *head.parameters()]
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.1)
        zt = torch.tensor(d["train_z"])
        zm, zs = zt.mean(), zt.std()
        n = len(zt)
        for step in range(args.steps):
            enc.train()
            idx = torch.randint(0, n, (args.batch,))
            f, w = torch.tensor(d["train_flux"][idx]), torch.tensor(d["train_ivar"][idx])
            if args.mode == "supervised":
                f, w = obj.views(f, w)
                pred = head(enc.forward_rebinned(f, w)["pooled"])[:, 0]
                loss = torch.nn.functional.huber_loss(pred, (zt[idx] - zm) / zs)
            else:
                loss = obj(enc.forward_rebinned, f, w)["loss"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 3.0)
            opt.step()
            sched.step()
            if step % 50 == 0:
                print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    m = score(enc, d)
    for i, other in enumerate(args.other):
        o = load(other, enc, other.parent / f"{other.name}-spec-logbins-{enc.cfg.log_bins}.npz")
        m.update({f"other{i}_{k}": v for k, v in score(enc, o).items()})
    rec = {"mode": args.mode, "encoder": args.encoder, "enc_set": args.enc_set, "set": args.set,
           "steps": args.steps, "batch": args.batch, "lr": args.lr, "train_s": round(time.time() - t0),
           **{k: round(v, 4) for k, v in m.items()}}
    print(json.dumps(rec))
    with open(args.data.parent / "spectrum_ssl_results.jsonl", "a") as fh:
        fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
