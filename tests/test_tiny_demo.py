"""The tiny demo as a new user meets it: the README's runnable blocks, in order, in a fresh
folder, and every cheap example of every command's ``--help`` against a real tiny demo.

Both run on copies of the session's one ``galclip demo --preset tiny`` (``conftest.tiny_demo``),
in this one file so that ``pytest -n 2 --dist loadfile`` gives them to one worker. The README's
first block runs ``galclip demo --preset tiny`` (a few hundred galaxies, a few steps per stage),
the very command that made the shared demo, so it finds every stage done; this is also the
end-to-end test of the demo: every artefact must exist and be valid, and a rerun skips every stage.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_of_tiny_demo, galclip_env
from test_help_examples import ALL, REAL, RUN_FULLY, argv_of

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- runnable -->\s*```(bash|python)\n(.*?)```", re.S)


def runnable_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert len(runnable_blocks()) >= 2


@pytest.mark.slow
def test_readme_runnable_blocks_and_demo_artefacts(tmp_path, tiny_demo):
    env = galclip_env()
    copy_of_tiny_demo(tiny_demo, tmp_path / "runs" / "tiny")
    outputs = []
    for lang, code in runnable_blocks():
        cmd = (["bash", "-euo", "pipefail", "-c", code] if lang == "bash"
               else [sys.executable, "-c", code])
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, (f"README {lang} block failed:\n{code}\n"
                                   f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        outputs.append(r.stdout)
    # the first block's `galclip demo --preset tiny` reran the finished demo: it skipped every stage
    assert runnable_blocks()[0][1].startswith("galclip demo --preset tiny --out runs/tiny\n")
    assert outputs[0].count("done already, skipped") == 7, outputs[0]
    run = tmp_path / "runs" / "tiny"
    from galclip.data import validate_dataset
    from galclip.search.catalog import read_catalog_manifest

    # the survey's 240 galaxies and the preset's 48 look-up-only ones after them
    assert validate_dataset(run / "data")["n_rows"] == 240 + 48
    from galclip.data import open_dataset
    from galclip.data.splits import split_indices

    cols = open_dataset(run / "data").read_columns(["object_id", "split"])
    assert (cols["split"][240:] == "reference").all() and "reference" not in cols["split"][:240]
    for enc in ("pretrain-image", "pretrain-spectrum"):
        from galclip.models import load_encoder

        assert load_encoder(run / enc / "encoder.safetensors").modality in enc
    import galclip

    galclip.load_model(run / "align" / "model.safetensors")
    cat = read_catalog_manifest(run / "catalog", verify_checksums=True)
    assert cat["n_rows"] == 240 + 48        # the catalog holds both
    assert (run / "catalog" / "index-image.faiss").exists()
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["results"] and (run / "report" / "report.html").exists()
    # the evaluation's train and test rows are the survey's, never a reference row
    assert any(note.startswith("48 look-up-only galaxies") for note in metrics["notes"])
    for split, n in metrics["splits"].items():
        assert n == len(split_indices(cols["object_id"], split, stored=cols["split"])) <= 240
    assert (run / "data-realism" / "realism.md").exists()  # beside the dataset, not inside it


@pytest.mark.slow
def test_cheap_help_examples_run_against_a_real_tiny_demo(tmp_path, tiny_demo, monkeypatch, capsys):
    """Each runs through ``galclip.cli.main`` in this process (the command line is parsed and
    dispatched exactly as ``galclip`` does; the README test above runs commands as processes)."""
    from galclip.cli import main

    demo = copy_of_tiny_demo(tiny_demo, tmp_path / "runs" / "tiny")
    monkeypatch.chdir(tmp_path)
    for command, line in ALL:
        argv = argv_of(line, demo)
        cheap = command in RUN_FULLY or (command == "simulate" and "--report" in argv)
        if not cheap or (any(str(REAL) in a for a in argv) and not REAL.exists()):
            continue
        argv = [a.replace(str(demo / "catalog-hats"), str(tmp_path / "catalog-hats")) for a in argv]
        assert main(argv) == 0, f"{line}\n{capsys.readouterr().err[-2000:]}"
