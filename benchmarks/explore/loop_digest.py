"""Digests of what the supervised baselines and the few-shot probes fit, to show that a change to
their training loop changes no weight and no figure.

Trains, on small seeded synthetic data (CPU, one thread, seconds), an MLP probe (regression and
classification, stopped by patience), the label-efficiency curve, and two supervised baselines:
one stopped by patience with reduce-on-plateau learning-rate drops and augmented views, one run
to its epoch budget. Prints one JSON object: for each fit the sha256 of its weights (every tensor
of the state dict, in order), of its predictions, and its stopping record. Run it on two versions
of the code and compare the two outputs byte for byte::

    PYTHONPATH=src python benchmarks/explore/loop_digest.py > after.json
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import torch


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]


def weights(net: torch.nn.Module) -> str:
    return digest(*(v.detach().cpu().numpy() for v in net.state_dict().values()))


def features(n: int, seed: int, dim: int = 8):
    rng = np.random.default_rng(seed)
    y = np.stack([rng.uniform(0, 1, n), rng.uniform(9, 11.5, n)], 1)
    x = y @ rng.normal(size=(2, dim)) + rng.normal(0, 0.3, (n, dim))
    return x, y


def probes() -> dict:
    from galclip.eval.probes import MLPProbe, ProbeConfig, label_efficiency

    cfg = ProbeConfig(epochs=60, patience=5, batch_size=64)
    x, y = features(400, 0)
    out = {}
    reg = MLPProbe("regression", cfg).fit(x[:300], y[:300])
    out["probe_regression"] = {"weights": weights(reg.net), "pred": digest(reg.predict(x[300:]))}
    cls = MLPProbe("classification", cfg).fit(x[:300], (y[:300, 0] > 0.5).astype(int))
    out["probe_classification"] = {"weights": weights(cls.net), "pred": digest(cls.predict(x[300:]))}
    curve = label_efficiency(x[:300], y[:300], x[300:], y[300:], ["a", "b"], cfg=cfg)
    out["label_efficiency"] = {f: {k: round(v, 12) for k, v in r.items()} for f, r in curve.items()}
    return out


def baseline(cfg, augment, seed: int) -> dict:
    from galclip.eval.baselines import LogLambdaConv, SpectrumAugment, SupervisedBaseline

    rng = np.random.default_rng(seed)
    n = 120
    y = rng.standard_normal((n, 2))
    flux = rng.standard_normal((n, 1024)) + y[:, :1] * np.linspace(0, 1, 1024)
    x = {"flux": torch.tensor(flux, dtype=torch.float32), "ivar": torch.ones(n, 1024)}
    morph = {"morph_a": (y[:, 1] > 0).astype(np.int64)}
    torch.manual_seed(seed)
    net = SupervisedBaseline(LogLambdaConv(channels=[4, 8, 8], embed_dim=8), cfg,
                             augment=SpectrumAugment(n_spans=2, span_len=8) if augment else None)
    net.fit({k: v[:100] for k, v in x.items()}, y[:100], {c: v[:100] for c, v in morph.items()})
    pred, mp = net.predict({k: v[100:] for k, v in x.items()})
    rec = getattr(net, "record", net)  # the stopping record (on the baseline itself before the shared loop)
    return {"weights": weights(net.net), "pred": digest(pred, mp["morph_a"]),
            "epochs_run": rec.epochs_run, "stopped": rec.stopped,
            "best_epoch": getattr(rec, "best_epoch", None), "lr_drops": rec.lr_drops,
            "history": [round(v, 12) for v in rec.history]}


def baselines() -> dict:
    from galclip.eval.baselines import SupervisedConfig

    plateau = SupervisedConfig(epochs=25, batch_size=16, lr=3e-3, patience=4, lr_patience=2,
                               lr_factor=0.5)
    budget = SupervisedConfig(epochs=4, batch_size=32, lr=2e-3)
    return {"baseline_plateau": baseline(plateau, True, 1),
            "baseline_budget": baseline(budget, False, 2)}


def main() -> None:
    torch.set_num_threads(1)
    print(json.dumps({**probes(), **baselines()}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
