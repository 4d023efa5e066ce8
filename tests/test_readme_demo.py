"""The README as a new user follows it: its runnable blocks, in order, in a fresh folder.

The first block runs ``galclip demo --preset tiny`` (a few hundred galaxies, a few steps per
stage), so this is also the end-to-end test of the demo: afterwards every artefact must exist
and be valid.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
def test_readme_runnable_blocks_and_demo_artefacts(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    for lang, code in runnable_blocks():
        cmd = (["bash", "-euo", "pipefail", "-c", code] if lang == "bash"
               else [sys.executable, "-c", code])
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, (f"README {lang} block failed:\n{code}\n"
                                   f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    run = tmp_path / "runs" / "tiny"
    from galclip.data import validate_dataset
    from galclip.search.catalog import read_catalog_manifest

    assert validate_dataset(run / "data")["n_rows"] == 240
    for enc in ("pretrain-image", "pretrain-spectrum"):
        from galclip.models import load_encoder

        assert load_encoder(run / enc / "encoder.safetensors").modality in enc
    import galclip

    galclip.load_model(run / "align" / "model.safetensors")
    cat = read_catalog_manifest(run / "catalog", verify_checksums=True)
    assert cat["n_rows"] == 240
    assert (run / "catalog" / "index-image.faiss").exists()
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["results"] and (run / "report" / "report.html").exists()
    assert (run / "data-realism" / "realism.md").exists()  # beside the dataset, not inside it
    # a rerun skips every finished stage
    r = subprocess.run(["galclip", "demo", "--preset", "tiny", "--out", "runs/tiny"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.count("done already, skipped") == 7, r.stdout
