"""benchmarks/gpu/run.sh, the prepared GPU benchmark, runs end to end at toy size on the CPU
(nano presets, 32 galaxies) and prints its one table with every row measured."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_script_runs_at_toy_size(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# earlier results\n")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(ROOT / "benchmarks/gpu/run.sh"), "--toy", "--results", str(results),
                           "--compile-backend", "eager"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = results.read_text()
    assert text.startswith("# earlier results\n")  # appended, not overwritten
    rows = re.findall(r"^\| (embed|pretrain|align)[^|]*\| ([\d,.]+) (\S+) \|", text, re.M)
    assert [r[0] for r in rows] == ["embed"] * 6 + ["pretrain"] * 2 + ["align"]  # 2: AstroCLIP
    assert all(float(r[1].replace(",", "")) > 0 for r in rows)
    assert "+ compile" in text and "toy size" in text and "CPU" in text
