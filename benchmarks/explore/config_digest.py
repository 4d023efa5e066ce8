"""The resolved config of every packaged training preset (and each stage's defaults with every
objective), as the JSON text written in key order, to show that a change to the config code
resolves every preset to the same mapping, key order and int/float types included.

Works on versions whose ``resolve_config`` returns a mapping and on those returning a
``TrainConfig`` (``to_dict()``). Run it on two versions and compare the outputs byte for byte::

    PYTHONPATH=src python benchmarks/explore/config_digest.py > after.json
"""
from __future__ import annotations

import json


def resolved(stage: str, preset: str | None, overrides: list[str]) -> str:
    from galclip.train.schema import resolve_config

    cfg = resolve_config(stage, preset, overrides)
    return json.dumps(cfg if isinstance(cfg, dict) else cfg.to_dict())


def main() -> None:
    from galclip.train.registry import STAGES, objective_names
    from galclip.train.schema import list_presets

    out = {}
    for stage in STAGES:
        for preset in list_presets(stage):
            out[f"{stage}:{preset}"] = resolved(stage, preset, [])
        for name in objective_names(stage):
            out[f"{stage}:defaults:{name}"] = resolved(stage, None, [f"objective.name={name}"])
    print(json.dumps(out, indent=0))


if __name__ == "__main__":
    main()
