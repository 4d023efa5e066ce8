"""Evaluate a trained model: zero-shot k-NN, few-shot probes, morphology, retrieval and
supervised baselines on the same split; writes metrics.json, report.md and report.html.

Examples (paths `make demo` creates):
  galclip evaluate --model runs/demo/align/model.safetensors --data runs/demo/data --out runs/demo/eval
  galclip evaluate --model runs/demo/align/model.safetensors --data runs/demo/data \
      --out runs/demo/eval-val --config gpu --split val knn.k=32
  galclip evaluate --model runs/demo/align/model.safetensors --data runs/demo/data \
      --out runs/demo/eval-pca baselines.image.enabled=false plots.embedding_map=pca

--config takes a YAML file or a preset name (cpu, gpu); key=value overrides follow (dotted keys).
With --catalog the report scores the catalog's stored vectors (what galclip serve searches);
otherwise embeddings are cached under OUT/cache (keyed by model, dataset fingerprint and rows).
Rerunning a finished evaluation with unchanged inputs does nothing.
"""
from __future__ import annotations

import argparse
import shlex


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="CKPT", help="GalaxyCLIP checkpoint file")
    p.add_argument("--data", required=True, help="dataset folder (galclip format)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder")
    p.add_argument("--split", default=None, choices=("test", "val"),
                   help="split to score (default: test; training always uses train)")
    p.add_argument("--config", default="cpu", help="YAML file or preset name (default: cpu)")
    p.add_argument("--image-encoder", metavar="CKPT",
                   help="pretrained image encoder for the unaligned baseline (default: the "
                        "model's own backbone when it was frozen during alignment)")
    p.add_argument("--spectrum-encoder", metavar="CKPT", help="as --image-encoder, for spectra")
    p.add_argument("--catalog", metavar="CATALOG_DIR",
                   help="score this catalog's stored vectors (galclip embed of --model and --data: "
                        "what galclip serve searches) instead of embedding the data again")
    p.add_argument("--injection", metavar="JSON",
                   help="injection.json of benchmarks/outlier_injection.py made with --model: "
                        "its AUROC / precision per planted anomaly go into the report")
    p.add_argument("--real-spectra", metavar="JSON",
                   help="the --json file of benchmarks/sim_to_real.py run on a catalog of --model: "
                        "how the model reads real spectra goes into the report")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from galclip.config import save_config
    from galclip.eval.evaluate import evaluate
    from galclip.eval.report import summary_row
    from galclip.eval.schema import evaluation_config

    overrides = list(args.overrides)
    if args.split:
        overrides.append(f"data.test_split={args.split}")
    cfg = evaluation_config(args.config, overrides)
    save_config(cfg.to_dict(), Path(args.out) / "config.yaml")
    command = command_line(args)
    metrics = evaluate(args.model, args.data, args.out, cfg,
                       {"image": args.image_encoder, "spectrum": args.spectrum_encoder}, command,
                       catalog=args.catalog, injection=args.injection,
                       real_spectra=args.real_spectra)
    for r in metrics["results"]:
        s = summary_row(r, metrics["properties"])
        print(f"{s['source']:>15} {s['model']:>16} {s['type']:>10}  z R2 {_f(s['redshift_r2'])}  "
              f"props R2 {_f(s['mean_property_r2'])}  morph acc {_f(s['morphology_accuracy'])}")
    print(f"report written to {Path(args.out) / 'report.html'} (and report.md, metrics.json)")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would retype it (recorded in metrics.json)."""
    parts = ["galclip", "evaluate", "--model", args.model, "--data", args.data, "--out", args.out,
             "--config", args.config]
    for flag in ("split", "image_encoder", "spectrum_encoder", "catalog", "injection",
                 "real_spectra"):
        if getattr(args, flag):
            parts += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    return " ".join(shlex.quote(str(p)) for p in [*parts, *args.overrides])


def _f(x) -> str:
    return "  —  " if x is None or x != x else f"{x:.3f}"
