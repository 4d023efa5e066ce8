"""Planted-anomaly figures in the evaluation report, read from the file the benchmark writes.

``benchmarks/outlier_injection.py`` plants known anomalies in a simulated survey (swapped
image–spectrum pairs, blends, image artefacts, broken spectra, AGN-like lines), embeds it with
a model and scores it with ``galclip outliers``; per kind and score it writes the AUROC (clean
galaxies against that kind; Hanley & McNeil 1982) and the precision among the 1 % highest
scores to ``injection.json``. Planting needs the simulator's raw arrays, a second embedding
pass and an index of its own, so ``galclip evaluate`` does not plant anything: with
``--injection FILE`` it reads that file (refused unless it was made with the evaluated model)
and the report shows its table.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCORES = ("mismatch_score", "rarity_image", "rarity_spectrum", "combined")
FIELDS = ("auroc", "precision_top1pct")


def read_injection(path: str | Path, model_sha256: str) -> dict[str, Any]:
    """The benchmark's table, checked: JSON with ``model_sha256`` equal to ``model_sha256``
    and, per kind, ``n`` and every score's AUROC and precision. Raises ValueError (or
    FileNotFoundError) naming the file and the field."""
    from galclip.eval.benchmark_file import read_benchmark_json
    from galclip.storage import sha256_file

    path, obj = read_benchmark_json(
        path, "--injection", "benchmarks/outlier_injection.py (OUT/injection.json)", model_sha256,
        "plant the anomalies with the same model (benchmarks/outlier_injection.py --model)")
    if not isinstance(obj.get("kinds"), dict) or not obj["kinds"]:
        raise ValueError(f"{path}: field 'kinds' missing or empty: not an injection.json of "
                         f"benchmarks/outlier_injection.py")
    theirs = obj["model_sha256"]
    for kind, row in obj["kinds"].items():
        _check_row(path, kind, row)
    args = obj.get("args") or {}
    return {"file": str(path.resolve()), "sha256": sha256_file(path), "model_sha256": theirs,
            "data": args.get("data"), "fraction": args.get("fraction"), "seed": args.get("seed"),
            "kinds": obj["kinds"]}


def _check_row(path: Path, kind: str, row: Any) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("n"), int):
        raise ValueError(f"{path}: field 'kinds.{kind}.n' missing or not an integer")
    for s in SCORES:
        for f in FIELDS:
            v = (row.get(s) or {}).get(f) if isinstance(row.get(s), dict) else None
            if not isinstance(v, (int, float)):
                raise ValueError(f"{path}: field 'kinds.{kind}.{s}.{f}' missing or not a number")


def table(injection: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per planted kind) of the report's table; no rows without a file."""
    head = ["kind", "n", *[f"{s} AUROC / P@1%" for s in SCORES]]
    rows = [[kind, str(r["n"]), *[f"{r[s]['auroc']:.3f} / {r[s]['precision_top1pct']:.2f}"
                                  for s in SCORES]]
            for kind, r in (injection.get("kinds") or {}).items()]
    return head, rows
