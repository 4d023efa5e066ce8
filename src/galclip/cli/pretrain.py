"""Pretrain an encoder without labels (objectives: image dino | simclr, spectrum masked | contrastive).

Examples (paths `make demo` creates):
  galclip pretrain spectrum --config spectrum-cpu --data runs/demo/data --out runs/demo/pre-spec
  galclip pretrain image --config image-cpu --data runs/demo/data --out runs/demo/pre-img optim.lr=1e-4

--config takes a YAML file or a packaged preset (image-cpu and spectrum-cpu: the CPU small-data
recipe, SimCLR and contrastive on conv encoders; image-astrodino and spectrum-specformer:
AstroCLIP's published DINOv2 and masked-modelling setting); trailing key=value pairs override single fields
(sections seed, data, model, objective, optim, trainer; e.g. objective.name=simclr model.depth=6).
The run folder gets the resolved config.yaml, state.json, checkpoints/last.ckpt, CSV logs and
encoder.safetensors. Rerun the same command after an interruption to resume from the last
checkpoint; rerunning a finished run is a no-op.
"""
from __future__ import annotations

import argparse

from galclip.modalities import NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="modality", metavar="{" + ",".join(NAMES) + "}", required=True)
    for modality in NAMES:
        q = sub.add_parser(modality, help=f"pretrain the {modality} encoder")
        q.add_argument("--config", default=None,
                       help="YAML file or preset name (default: built-in CPU defaults)")
        q.add_argument("--data", required=True, help="dataset folder (galclip format)")
        q.add_argument("--out", required=True, help="run folder (created; reused to resume)")
        q.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from galclip.train.runner import train

    path = train(f"pretrain-{args.modality}", args.data, args.out, args.config, args.overrides)
    print(f"pretrained {args.modality} encoder: {path}")
    return 0
