"""Training and inference throughput of every encoder preset on this machine.

Inference: ``encoder(x)`` under ``torch.inference_mode`` in eval mode. Training: forward +
backward + AdamW step of the encoder alone (a squared-norm loss on all tokens), which bounds
pretraining speed from above (DINO adds a teacher pass and the multi-crop views). On a GPU both
run under bf16 autocast. Inputs are physical-shaped: 152 px g,r,z cutouts, 7781-pixel spectra.

  python benchmarks/encoder_throughput.py                      # CPU-sized presets
  python benchmarks/encoder_throughput.py --presets all --batch 64 --seconds 10
  python benchmarks/encoder_throughput.py --presets spectrum-tiny --set log_bins=0   # a preset field changed
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time


def _inputs(modality: str, batch: int, device):
    import torch

    from galclip import conventions as C

    if modality == "image":
        return (0.05 * torch.randn(batch, *C.IMAGE_SHAPE, device=device),)
    return (torch.randn(batch, C.N_WAVE, device=device), torch.ones(batch, C.N_WAVE, device=device))


def _rate(step, batch: int, seconds: float, device) -> float:
    """Items per second over at least ``seconds`` (after one warm-up call)."""
    import torch

    step()
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
        if time.perf_counter() - t0 >= seconds:
            return n / (time.perf_counter() - t0)


def measure(name: str, batch: int, seconds: float, device, overrides: dict | None = None) -> dict:
    import torch

    from galclip.models import create_encoder

    enc = create_encoder(name, **(overrides or {})).to(device)
    x = _inputs(enc.modality, batch, device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-4)

    def infer():
        with torch.inference_mode(), autocast:
            enc(*x)

    def train():
        with autocast:
            loss = enc(*x)["tokens"].float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    enc.eval()
    inference = _rate(infer, batch, seconds, device)
    enc.train()
    training = _rate(train, batch, seconds, device)
    return {"preset": name, "params_M": sum(p.numel() for p in enc.parameters()) / 1e6,
            "inference": inference, "train": training}


def main() -> None:
    import torch

    from galclip.models import list_encoders

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=None,
                   help="preset names or 'all' (default: all on a GPU, the CPU-sized ones otherwise)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--set", nargs="*", default=[], metavar="field=value",
                   help="encoder config fields changed in every preset measured (e.g. log_bins=0)")
    args = p.parse_args()
    from galclip.config import parse_override

    overrides = {k: v for text in args.set for k, v in parse_override(text).items()}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device)
    cpu_sized = [n for n in list_encoders() if n.endswith(("nano", "tiny"))]
    presets = (list_encoders() if args.presets == ["all"] or (args.presets is None and device.type == "cuda")
               else args.presets or cpu_sized)
    where = (torch.cuda.get_device_name(device) + ", bf16 autocast" if device.type == "cuda"
             else f"CPU {os.cpu_count()} cores ({platform.processor() or platform.machine()}), fp32, "
                  f"{torch.get_num_threads()} threads")
    print(f"encoder throughput on {where}; batch {args.batch}; items/s"
          + (f"; with {' '.join(args.set)}" if args.set else ""))
    print(f"{'preset':<16}{'params (M)':>11}{'inference':>11}{'train':>9}")
    for name in presets:
        r = measure(name, args.batch, args.seconds, device, overrides)
        unit = "img/s" if name.startswith("image") else "spec/s"
        print(f"{r['preset']:<16}{r['params_M']:>11.2f}{r['inference']:>11.1f}{r['train']:>9.1f}  {unit}",
              flush=True)


if __name__ == "__main__":
    main()
