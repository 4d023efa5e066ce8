"""CPU embedding throughput of the published-size AstroCLIP model beside galclip's CPU model.

``encode_image`` / ``encode_spectrum`` under ``torch.inference_mode`` in eval mode, fp32 and
bf16 autocast, at a few batch sizes; random weights at the released size (ViT-L/12 on 144 px,
SpecFormer 6 x 768, heads of 1024: 370.8 M parameters; the arithmetic is the released model's).
The galclip row is a GalaxyCLIP on the CPU recipe's encoders (``image-conv-nano``,
``spectrum-conv-nano``, embed_dim 128).

  OMP_NUM_THREADS=2 python benchmarks/astroclip_throughput.py --batches 8 32 --seconds 20
"""
from __future__ import annotations

import argparse
import contextlib
import time


def rate(fn, batch: int, seconds: float) -> float:
    """Items per second over at least ``seconds`` and two calls (after one warm-up call)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < 2 * batch or time.perf_counter() - t0 < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - t0)


def models() -> dict:
    import torch

    from galclip.models import create_encoder
    from galclip.models.astroclip import build_astroclip
    from galclip.models.clip import GalaxyCLIP

    torch.manual_seed(0)
    return {"AstroCLIP (published size)": build_astroclip({}).eval(),
            "galclip CPU (conv-nano)": GalaxyCLIP(create_encoder("image-conv-nano"),
                                                  create_encoder("spectrum-conv-nano"),
                                                  embed_dim=128).eval()}


def measure(model, batch: int, precision: str, seconds: float) -> tuple[float, float]:
    import torch

    from galclip import conventions as C

    images = 0.05 * torch.randn(batch, *C.IMAGE_SHAPE).abs()
    flux, ivar = torch.randn(batch, C.N_WAVE) + 3, torch.ones(batch, C.N_WAVE)
    cast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16"
            else contextlib.nullcontext())

    def run(fn):
        def step():
            with torch.inference_mode(), cast:
                fn()
        return rate(step, batch, seconds)

    return run(lambda: model.encode_image(images)), run(lambda: model.encode_spectrum(flux, ivar))


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | precision | batch | images/s | spectra/s |\n|---|---|---|---|---|")
    for name, model in models().items():
        for precision in args.precisions:
            for batch in args.batches:
                img, spec = measure(model, batch, precision, args.seconds)
                print(f"| {name} | {precision} | {batch} | {img:,.1f} | {spec:,.1f} |", flush=True)


if __name__ == "__main__":
    main()
