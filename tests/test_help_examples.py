"""Every example in every ``galclip <command> --help`` works as written.

The examples name the paths ``make demo`` creates (``runs/demo/...``). The fast test lays out a
small stand-in for that folder (a 60-galaxy dataset with ids 0..59, a real tiny GalaxyCLIP
checkpoint and its encoders, a catalog embedded with ``galclip embed`` and indexed), then runs
the examples of the search-side commands completely and checks that every other example parses
and that every input path it names exists. The cheap examples also run against a real
``galclip demo --preset tiny``: in test_tiny_demo.py, beside the README's blocks, so the two share
one demo.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from galclip.cli import COMMANDS, build_parser, main

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
OUTPUT_FLAGS = {"--out", "--report-out", "--hats"}
RUN_FULLY = {"search", "index", "export"}  # cheap enough to run on every test run
GALCLIP = [sys.executable, "-m", "galclip.cli"]


def examples() -> list[tuple[str, str]]:
    """(command, example line) for every ``galclip ...`` example in every command's help."""
    out = []
    for name, module, _ in COMMANDS:
        lines = (importlib.import_module(module).__doc__ or "").splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip().removeprefix("Example:").removeprefix("Examples:").strip()
            if line.startswith("galclip "):
                while line.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line[:-1].rstrip() + " " + lines[i].strip()
                out.append((name, line.split("#")[0].split("  then ")[0].strip()))
            i += 1
    return out


def argv_of(line: str, demo: Path) -> list[str]:
    words = shlex.split(line)[1:]
    return [w.replace("runs/demo", str(demo)).replace("../shared/data/real", str(REAL)) for w in words]


def input_paths(argv: list[str]) -> list[str]:
    """Path-like arguments that are read (not written)."""
    paths = []
    for i, w in enumerate(argv):
        if "/" in w and "=" not in w and not (i and argv[i - 1] in OUTPUT_FLAGS) and not w.startswith("http"):
            paths.append(w)
    return paths


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A stand-in for runs/demo: data, pretrain-*/encoder.safetensors, align/, catalog/."""
    import torch
    import yaml

    from galclip.data import Provenance, shard_name, write_manifest, write_shard
    from galclip.models import create_encoder
    from galclip.models.checkpoint import save_encoder
    from galclip.models.clip import GalaxyCLIP, save_model
    from galclip.train.schema import train_config
    from search_helpers import latent_rows

    root = tmp_path_factory.mktemp("help") / "demo"
    (root / "data").mkdir(parents=True)
    rows = latent_rows(60, seed=0)
    rows["object_id"] = np.arange(60, dtype=np.int64)
    write_manifest(root / "data", [write_shard(root / "data" / shard_name(0), rows)],
                   Provenance(command="test", seed=0))
    torch.manual_seed(0)
    model = GalaxyCLIP(create_encoder("image-nano", depth=1), create_encoder("spectrum-nano", depth=1),
                       embed_dim=8)
    save_model(model, root / "align" / "model.safetensors")
    (root / "align" / "config.yaml").write_text(yaml.safe_dump(train_config("align", "cpu").to_dict()))
    save_encoder(model.image_encoder, root / "pretrain-image" / "encoder.safetensors")
    save_encoder(model.spectrum_encoder, root / "pretrain-spectrum" / "encoder.safetensors")
    assert main(["embed", "--model", str(root / "align" / "model.safetensors"), "--data",
                 str(root / "data"), "--out", str(root / "catalog"), "--batch-size", "30"]) == 0
    assert main(["index", str(root / "catalog")]) == 0
    return root


ALL = examples()


def test_every_command_has_examples():
    assert {c for c, _ in ALL} == {name for name, _, _ in COMMANDS}


@pytest.mark.slow
@pytest.mark.parametrize("command,line", ALL, ids=[f"{c}-{i}" for i, (c, _) in enumerate(ALL)])
def test_help_example_works_as_written(command, line, demo, tmp_path, monkeypatch, capsys):
    argv = argv_of(line, demo)
    if any(str(REAL) in a for a in argv) and not REAL.exists():
        pytest.skip(f"real survey files not found at {REAL}")
    monkeypatch.chdir(tmp_path)  # relative outputs (e.g. --out neighbours.csv) land here
    args = build_parser().parse_args(argv)  # the example parses
    missing = [p for p in input_paths(argv) if not Path(p).exists()]
    assert not missing, f"{line!r} reads paths that `make demo` does not create: {missing}"
    if command in RUN_FULLY:
        assert main(argv) == 0, capsys.readouterr().err
    elif command == "serve":
        from galclip.serve.server import create_app

        assert create_app(args.catalog, data_dir=args.data).title == "galclip explorer"
    assert isinstance(args, argparse.Namespace)
