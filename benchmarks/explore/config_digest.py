"""The resolved config of every packaged preset -- each training stage's presets and defaults with
every objective, the evaluation presets and defaults, and every stage of every demo preset (its
preset plus its overrides) -- as the JSON text written in key order, to show that a change to the
config code resolves every preset to the same mapping, key order and int/float types included.

Works on versions whose resolvers return a mapping and on those returning a typed config
(``to_dict()``), and on versions before and after the training resolver was named
``train_config``. Run it on two versions and compare the outputs byte for byte::

    PYTHONPATH=src python benchmarks/explore/config_digest.py > after.json
"""
from __future__ import annotations

import json


def as_json(cfg) -> str:
    return json.dumps(cfg if isinstance(cfg, dict) else cfg.to_dict())


def train(stage: str, preset: str | None, overrides: list[str]) -> str:
    from galclip.train import schema

    resolve = getattr(schema, "train_config", None) or schema.resolve_config
    return as_json(resolve(stage, preset, overrides))


def evaluation(preset: str | None, overrides: list[str]) -> str:
    try:
        from galclip.eval.schema import evaluation_config
    except ImportError:  # versions that resolved it in evaluate.py
        from galclip.eval.evaluate import evaluation_config
    return as_json(evaluation_config(preset, overrides))


def demo_stages() -> dict[str, str]:
    from galclip.demo import PRESETS

    out = {}
    for name, p in PRESETS.items():
        for stage in ("pretrain_image", "pretrain_spectrum", "align"):
            sc = getattr(p, stage)
            if sc is not None:
                out[f"demo:{name}:{stage}"] = train(stage.replace("_", "-"), sc.preset, list(sc.overrides))
        out[f"demo:{name}:evaluate"] = evaluation(p.evaluate.preset, list(p.evaluate.overrides))
    return out


def main() -> None:
    from galclip.train.registry import STAGES, objective_names
    from galclip.train.schema import list_presets

    out = {}
    for stage in STAGES:
        for preset in list_presets(stage):
            out[f"{stage}:{preset}"] = train(stage, preset, [])
        for name in objective_names(stage):
            out[f"{stage}:defaults:{name}"] = train(stage, None, [f"objective.name={name}"])
    for preset in ("cpu", "gpu", None):
        out[f"evaluate:{preset or 'defaults'}"] = evaluation(preset, [])
    out.update(demo_stages())
    print(json.dumps(out, indent=0))


if __name__ == "__main__":
    main()
