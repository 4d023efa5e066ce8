"""Embedding throughput of `galclip embed` (objects/s), per modality and for the whole catalog.

The model is a checkpoint (--model) or a GalaxyCLIP built from encoder presets (untrained
weights: speed does not depend on them). Runs fp32 on the CPU and bf16 autocast on a GPU, as
`galclip embed` does. The dataset is --data, or a synthetic one of --n rows written to a
temporary folder.

    .venv/bin/python benchmarks/embed_throughput.py --n 256 --image-preset image-nano \
        --spectrum-preset spectrum-nano --batch-size 64
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def synthetic_dataset(out: Path, n: int) -> Path:
    import numpy as np

    from galclip import conventions as C
    from galclip.data import Provenance, shard_name, write_manifest, write_shard

    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    shards, step = [], 256
    for i, lo in enumerate(range(0, n, step)):
        m = min(step, n - lo)
        rows = {"object_id": np.arange(lo, lo + m, dtype=np.int64),
                "ra": rng.uniform(0, 360, m), "dec": rng.uniform(-10, 10, m),
                "redshift": rng.uniform(0, 0.6, m).astype(np.float32),
                "image": rng.normal(0, 0.05, (m, *C.IMAGE_SHAPE)).astype(np.float32),
                "spectrum_flux": rng.normal(1, 0.3, (m, C.N_WAVE)).astype(np.float32),
                "spectrum_ivar": np.ones((m, C.N_WAVE), np.float32)}
        shards.append(write_shard(out / shard_name(i), rows))
    write_manifest(out, shards, Provenance(command="benchmarks/embed_throughput.py"))
    return out


def make_model(args, tmp: Path):
    import torch

    import galclip
    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP, save_model

    if args.model:
        return galclip.load_model(args.model), Path(args.model)
    torch.manual_seed(0)
    model = GalaxyCLIP(create_encoder(args.image_preset), create_encoder(args.spectrum_preset),
                       embed_dim=args.embed_dim)
    path = save_model(model, tmp / "model.safetensors")
    return galclip.load_model(path), path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: build from presets)")
    ap.add_argument("--image-preset", default="image-nano")
    ap.add_argument("--spectrum-preset", default="spectrum-nano")
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    import torch

    from galclip.data import open_dataset
    from galclip.models.inference import autocast as _autocast
    from galclip.models.inference import iter_embeddings
    from galclip.search.catalog import build_catalog

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = Path(args.data) if args.data else synthetic_dataset(tmp / "data", args.n)
        model, path = make_model(args, tmp)
        ds = open_dataset(data, verify=False)
        precision = "bf16 autocast" if device.startswith("cuda") else "fp32"
        print(f"device {device} ({precision}), {torch.get_num_threads()} threads, {len(ds)} objects, "
              f"batch {args.batch_size}, model {args.image_preset}+{args.spectrum_preset} "
              f"(E={model.embed_dim})" if not args.model else f"model {args.model}")
        for modality in ("image", "spectrum"):
            list(iter_embeddings(model, torch.utils.data.Subset(ds, range(min(8, len(ds)))), 8,
                                 device, (modality,)))  # warm-up
            t0 = time.perf_counter()
            with _autocast(device):
                n = sum(len(b["object_id"]) for b in iter_embeddings(model, ds, args.batch_size, device,
                                                                     (modality,)))
            dt = time.perf_counter() - t0
            print(f"{modality:8s}: {n / dt:8.1f} objects/s ({n} in {dt:.1f} s)")
        t0 = time.perf_counter()
        build_catalog(model, data, tmp / "catalog", model_path=path, batch_size=args.batch_size,
                      device=device, progress=False)
        dt = time.perf_counter() - t0
        print(f"galclip embed (both modalities, Parquet written): {len(ds) / dt:.1f} objects/s")


if __name__ == "__main__":
    main()
