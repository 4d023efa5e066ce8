"""Align image and spectrum encoders in one embedding space (contrastive, AstroCLIP-style).

Examples (paths `make demo` creates):
  galclip align --config cpu --data runs/demo/data --out runs/demo/align-5 \\
      --image-encoder runs/demo/pretrain-image/encoder.safetensors \\
      --spectrum-encoder runs/demo/pretrain-spectrum/encoder.safetensors trainer.max_epochs=5
  galclip align --config runs/demo/align/config.yaml --data runs/demo/data --out runs/demo/align
      (the same command again resumes a killed run)

--config takes a YAML file or a preset name (cpu, gpu); key=value overrides follow (dotted keys,
e.g. optim.freeze_backbones=false trainer.devices=2 trainer.strategy=ddp; the sections are those
of every training stage: seed, data, model, objective, optim, trainer). The run folder gets
config.yaml, state.json, checkpoints/last.ckpt, logs/ and model.safetensors (load with
galclip.load_model); rerunning a finished run is a no-op.
"""
from __future__ import annotations

import argparse
import os

from galclip.modalities import NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="cpu", help="YAML file or preset name (default: cpu)")
    p.add_argument("--data", required=True, help="dataset folder (galclip format)")
    p.add_argument("--out", required=True, help="run folder (resumed if it holds a run)")
    p.add_argument("--image-encoder", metavar="CKPT", help="pretrained image encoder file")
    p.add_argument("--spectrum-encoder", metavar="CKPT", help="pretrained spectrum encoder file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def run(args: argparse.Namespace) -> int:
    from galclip.train.runner import train

    overrides = list(args.overrides)
    for modality in NAMES:
        ckpt = getattr(args, f"{modality}_encoder")
        if ckpt:
            overrides.append(f"model.{modality}_checkpoint={ckpt}")
    path = train("align", args.data, args.out, args.config, overrides)
    if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
        print(f"model written to {path} (load with galclip.load_model)")
    return 0
