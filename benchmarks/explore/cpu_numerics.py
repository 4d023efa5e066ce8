"""Cheaper CPU training steps without changing the recipe? Flushing denormals, bf16 autocast
(issue 13, demo time).

Times forward + backward + AdamW step of the demo's *trained* encoders (where small weights,
moments and activations could be subnormal) on real rows of the demo data, in turn: fp32 as
the demo trains, fp32 with ``torch.set_flush_denormal(True)``, and bf16 autocast (fast only on
CPUs with native bf16, e.g. AMX / avx512_bf16). Prints the median seconds per step of each and
the subnormal fraction of the parameters and optimizer state.

    OMP_NUM_THREADS=2 python benchmarks/explore/cpu_numerics.py runs/demo
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

MODES = ("fp32", "fp32, flush denormals", "bf16 autocast")


def subnormal_fraction(tensors) -> float:
    tiny = torch.finfo(torch.float32).tiny
    n = d = 0
    for t in tensors:
        t = t.detach().float()
        n += t.numel()
        d += int(((t != 0) & (t.abs() < tiny)).sum())
    return d / max(n, 1)


def time_steps(enc, inputs, opt, mode: str, steps: int) -> float:
    torch.set_flush_denormal(mode == "fp32, flush denormals")
    t0 = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16 autocast"):
            out = enc(*inputs)
        loss = out["pooled"].float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_flush_denormal(False)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("demo", help="a finished demo folder (data/, align/, pretrain-spectrum/)")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    import galclip
    from galclip.data import open_dataset
    from galclip.models import load_encoder

    ds = open_dataset(f"{a.demo}/data")
    rows = [ds[i] for i in range(128)]
    images = torch.stack([torch.as_tensor(r["image"]) for r in rows[:64]]).float()
    flux = torch.stack([torch.as_tensor(r["spectrum_flux"]) for r in rows]).float()
    ivar = torch.stack([torch.as_tensor(r["spectrum_ivar"]) for r in rows]).float()
    clip = galclip.load_model(f"{a.demo}/align/model.safetensors")
    jobs = {"image backbone (aligned), batch 64": (clip.image_encoder, (images,)),
            "spectrum backbone (pretrained), batch 128":
                (load_encoder(f"{a.demo}/pretrain-spectrum/encoder.safetensors"), (flux, ivar))}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (enc, inputs) in jobs.items():
        enc.train()
        opt = torch.optim.AdamW(enc.parameters(), lr=1e-5)
        times = {m: [] for m in MODES}
        for _ in range(a.repeats):
            for mode in MODES:
                times[mode].append(time_steps(enc, inputs, opt, mode, a.steps))
        state = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.ndim]
        med = {m: float(np.median(t)) for m, t in times.items()}
        print(f"{name}: " + ", ".join(f"{m} {s:.3f} s/step (x{med['fp32'] / s:.2f})" for m, s in med.items())
              + f"; subnormal fraction: params {subnormal_fraction(enc.parameters()):.2e}, "
              f"AdamW state {subnormal_fraction(state):.2e}")


if __name__ == "__main__":
    main()
