"""A digest of a demo run's outputs, to show that a change left every weight and figure as it was.

For a ``galclip demo --out DIR`` folder, prints one JSON object: the sha256 of the tensors of each
exported weights file (the tensors only: their metadata names paths and times), of the catalog's
embeddings, and the evaluation's figures from ``report/metrics.json`` (results, intervals,
label efficiency, retrieval and photo-z, at full precision; the baselines' ``budget`` strings,
which print the seconds they took, are left out). Two runs of two versions of the code on the
same simulated survey compare byte for byte::

    python benchmarks/explore/demo_digest.py runs/before > before.json
    python benchmarks/explore/demo_digest.py runs/after > after.json && diff before.json after.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

FIGURES = ("splits", "results", "intervals", "label_efficiency", "retrieval", "photoz")
WEIGHTS = ("pretrain-image/encoder.safetensors", "pretrain-spectrum/encoder.safetensors",
           "align/model.safetensors")


def tensors_digest(path: Path) -> str:
    from safetensors.numpy import load_file

    h = hashlib.sha256()
    for name, value in sorted(load_file(str(path)).items()):
        h.update(name.encode())
        h.update(value.tobytes())
    return h.hexdigest()[:16]


def embeddings_digest(shards: Path) -> str:
    """The catalog's embedding columns (the shards' metadata names the model file's sha256, which
    covers its metadata: paths)."""
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    for f in sorted(shards.glob("*.parquet")):
        table = pq.read_table(f, columns=["object_id", "image_embedding", "spectrum_embedding"])
        for column in table.columns:
            h.update(repr(column.to_pylist()).encode())
    return h.hexdigest()[:16]


def without_budgets(value):
    if isinstance(value, dict):
        return {k: without_budgets(v) for k, v in value.items() if k != "budget"}
    if isinstance(value, list):
        return [without_budgets(v) for v in value]
    return value


def digest(run: Path) -> dict:
    out = {w: tensors_digest(run / w) for w in WEIGHTS if (run / w).exists()}
    out["catalog embeddings"] = embeddings_digest(run / "catalog" / "shards")
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    out["figures"] = without_budgets({k: metrics.get(k) for k in FIGURES})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a galclip demo --out folder")
    print(json.dumps(digest(p.parse_args().run), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
