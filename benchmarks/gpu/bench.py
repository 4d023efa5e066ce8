"""One GPU benchmark: embedding and training throughput of the published-size presets.

Prints one table and appends it to benchmarks/RESULTS.md with the GPU model:

* embedding end to end, Parquet on disk -> catalog shards on disk (``build_catalog``, the code
  of ``galclip embed``: DataLoader workers, pinned memory, bf16 autocast), per modality, eager
  and with the encoder under ``torch.compile``;
* training: a short DINO pretraining of the image encoder, masked-modelling pretraining of the
  spectrum encoder, and CLIP alignment (samples/s over the steps after a warm-up);
* peak GPU memory of each row.

The presets are ViT-L/12 at 144 px (``image-large``) and SpecFormer 6 x 768 (``spectrum-base``);
the published AstroCLIP model (same backbones, its stretch and heads) is embedded too.
``--toy`` runs the same code at CPU size (nano presets, a few dozen rows) so a test keeps it
working; benchmarks/gpu/run.sh is the entry point (sized for <= 8 minutes on one H200).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"  # training configs only the benchmarks use
sys.path.insert(0, str(HERE.parent))  # benchmarks/: the synthetic dataset writer

SIZES = {  # published-size run on a GPU | CPU toy run (for the test)
    "gpu": {"image": "image-large", "spectrum": "spectrum-base", "embed_dim": 1024, "n": 8192,
            "batch": 512, "workers": 12, "repeats": 2, "steps": 12, "skip": 2,
            "pretrain_image": ["--config", "image-astrodino", "trainer.devices=1",
                               "trainer.strategy=auto", "data.batch_size=64"],
            "pretrain_spectrum": ["--config", "spectrum-specformer", "trainer.devices=1",
                                  "trainer.strategy=auto", "data.batch_size=128"],
            "align": ["--config", "gpu", "data.batch_size=256"],
            "astroclip": {}},  # the released AstroCLIP size

    "toy": {"image": "image-nano", "spectrum": "spectrum-nano", "embed_dim": 16, "n": 32,
            "batch": 8, "workers": 1, "repeats": 1, "steps": 2, "skip": 1,
            "pretrain_image": ["--config", str(CONFIGS / "image-dino-cpu.yaml"), "data.batch_size=4",
                               "objective.crops.n_local=1"],
            "pretrain_spectrum": ["--config", str(CONFIGS / "spectrum-masked-cpu.yaml"), "data.batch_size=4"],
            "align": ["--config", "cpu", "data.batch_size=8", "model.embed_dim=16",
                      "data.max_val_rows=8", "objective.pool_size=8"],
            "astroclip": {"embed_dim": 16, "image_heads": 2, "spectrum_heads": 2,
                          "image_encoder": {"embed_dim": 32, "depth": 2, "num_heads": 2,
                                            "block_chunks": 2},
                          "spectrum_encoder": {"embed_dim": 24, "num_layers": 1, "num_heads": 2}}},
}

UNITS = {"image": "images/s", "spectrum": "spectra/s"}


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def make_model(size: dict, tmp: Path):
    import torch

    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP, save_model

    torch.manual_seed(0)
    model = GalaxyCLIP(create_encoder(size["image"]), create_encoder(size["spectrum"]),
                       embed_dim=size["embed_dim"])
    return model, save_model(model, tmp / "model.safetensors")


def embed_rate(model, path: Path, data: Path, modality: str, size: dict, device, tmp: Path) -> float:
    """Objects/s of build_catalog for one modality (a warm-up catalog first: compilation,
    cuDNN autotuning and worker start-up stay out of the timing)."""
    from galclip.search.catalog import build_catalog

    kw = dict(model_path=path, modalities=[modality], batch_size=size["batch"], device=device,
              num_workers=size["workers"], progress=False, overwrite=True,
              rows_per_shard=size["batch"] * 4)
    build_catalog(model, data, tmp / "warm", max_shards=1, **kw)
    rates = []
    for _ in range(size["repeats"]):
        reset_peak(device)
        t0 = time.perf_counter()
        m = build_catalog(model, data, tmp / f"cat-{modality}", **kw)
        rates.append(m["n_rows"] / (time.perf_counter() - t0))
    return sum(rates) / len(rates)


def bench_embedding(size: dict, data: Path, device, tmp: Path, backend: str) -> list[dict]:
    import torch

    model, path = make_model(size, tmp)
    model.to(device)
    rows = []
    for modality in ("image", "spectrum"):
        enc = f"{modality}_encoder"
        plain = getattr(model, enc)
        for compiled in (False, True):
            setattr(model, enc, torch.compile(plain, backend=backend) if compiled else plain)
            rate = embed_rate(model, path, data, modality, size, device, tmp)
            rows.append({"what": f"embed {modality} ({size[modality]}), Parquet -> catalog, "
                                 f"bf16{' + compile' if compiled else ''}" if device.type == "cuda"
                         else f"embed {modality} ({size[modality]}), Parquet -> catalog, "
                              f"fp32{' + compile' if compiled else ''}",
                         "rate": rate, "unit": UNITS[modality], "peak_gb": peak_gb(device)})
        setattr(model, enc, plain)
    return rows


def bench_astroclip(size: dict, data: Path, device, tmp: Path) -> list[dict]:
    """The published AstroCLIP model (random weights at its size) through ``galclip embed``'s
    code: the Legacy Survey stretch, ViT-L/12 and SpecFormer with AstroCLIP's heads."""
    import torch

    from galclip.models.astroclip import build_astroclip

    torch.manual_seed(0)
    model = build_astroclip(size["astroclip"]).to(device)
    path = tmp / "astroclip-random.bin"  # the catalog records this file's sha256
    path.write_bytes(b"random AstroCLIP weights")
    prec = "bf16" if device.type == "cuda" else "fp32"
    return [{"what": f"embed {m} (AstroCLIP published model), Parquet -> catalog, {prec}",
             "rate": embed_rate(model, path, data, m, size, device, tmp), "unit": UNITS[m],
             "peak_gb": peak_gb(device)} for m in ("image", "spectrum")]


class StepTimer:
    """Lightning callback: samples/s over training steps after ``skip`` warm-up steps."""

    def __init__(self, skip: int = 2):
        self.skip, self.steps, self.samples, self.t0, self.elapsed = skip, 0, 0, None, 0.0

    def as_callback(self):
        import lightning as L

        timer = self

        class _Cb(L.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                _sync(module.device)
                timer.t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                _sync(module.device)
                timer.steps += 1
                if timer.steps > timer.skip:
                    timer.elapsed += time.perf_counter() - timer.t0
                    timer.samples += _batch_len(batch)

        return _Cb()

    def rate(self) -> float:
        return self.samples / self.elapsed if self.elapsed else float("nan")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batch_len(batch) -> int:
    import torch

    if torch.is_tensor(batch):
        return len(batch)
    if isinstance(batch, dict):
        return _batch_len(next(iter(batch.values())))
    return _batch_len(batch[0])


def bench_pretrain(modality: str, size: dict, data: Path, device, tmp: Path) -> dict:
    from galclip.train.runner import train

    args = size[f"pretrain_{modality}"]
    config, overrides = args[1], args[2:]
    timer = StepTimer(size["skip"])
    reset_peak(device)
    train(f"pretrain-{modality}", data, tmp / f"pre-{modality}", config,
          [*overrides, f"trainer.max_steps={size['steps'] + timer.skip}",
           "trainer.progress_bar=false", "trainer.checkpoint_every_n_steps=100000",
           f"data.num_workers={size['workers']}"], callbacks=[timer.as_callback()])
    return {"what": f"pretrain {modality} ({size[modality]}), {config}", "rate": timer.rate(),
            "unit": UNITS[modality], "peak_gb": peak_gb(device)}


def bench_align(size: dict, data: Path, device, tmp: Path) -> dict:
    from galclip.train.runner import train

    args = size["align"]
    timer = StepTimer(size["skip"])
    reset_peak(device)
    train("align", data, tmp / "align", args[1], [
        *args[2:], f"model.image_encoder={size['image']}",
        f"model.spectrum_encoder={size['spectrum']}", "trainer.max_epochs=1",
        f"trainer.max_steps={size['steps'] + size['skip']}", f"data.num_workers={size['workers']}",
        "trainer.checkpoint_every_n_steps=100000", "objective.cache_backbone_features=false"],
        callbacks=[timer.as_callback()])
    return {"what": f"align (frozen {size['image']} + {size['spectrum']}), {args[1]}",
            "rate": timer.rate(), "unit": "pairs/s", "peak_gb": peak_gb(device)}


def table(rows: list[dict]) -> str:
    lines = ["| what | throughput | peak GPU memory |", "|---|---|---|"]
    for r in rows:
        mem = "-" if r["peak_gb"] is None else f"{r['peak_gb']:.1f} GiB"
        lines.append(f"| {r['what']} | {r['rate']:,.1f} {r['unit']} | {mem} |")
    return "\n".join(lines)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=HERE, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toy", action="store_true", help="CPU-sized presets and data (the test)")
    ap.add_argument("--results", default=str(HERE.parent / "RESULTS.md"),
                    help="Markdown file the table is appended to ('' for none)")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (the toy test uses 'eager': tracing, no codegen)")
    args = ap.parse_args()
    import torch
    from embed_throughput import synthetic_dataset

    size = SIZES["toy" if args.toy else "gpu"]
    device = torch.device("cuda" if torch.cuda.is_available() and not args.toy else "cpu")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = synthetic_dataset(tmp / "data", size["n"])
        rows = bench_embedding(size, data, device, tmp, args.compile_backend)
        rows += bench_astroclip(size, data, device, tmp)
        rows += [bench_pretrain("image", size, data, device, tmp),
                 bench_pretrain("spectrum", size, data, device, tmp),
                 bench_align(size, data, device, tmp)]
    wall = time.perf_counter() - t_start
    head = (f"### GPU benchmark, {dt.date.today().isoformat()}, commit {commit()}, "
            f"{device_name(device)}, torch {torch.__version__}{', toy size' if args.toy else ''}\n\n"
            f"`benchmarks/gpu/run.sh{' --toy' if args.toy else ''}`: {size['n']} galaxies, "
            f"batch {size['batch']}, {size['workers']} loader workers; {wall:.0f} s in all.\n")
    text = f"{head}\n{table(rows)}\n"
    print(text)
    if args.results:
        with open(args.results, "a") as f:
            f.write(f"\n{text}")


if __name__ == "__main__":
    main()
