#!/usr/bin/env bash
# One GPU benchmark, sized to finish in <= 8 minutes on one GPU (H200-class): embedding
# throughput Parquet -> catalog for ViT-L/12 (144 px) and SpecFormer 6x768 in bf16, eager and
# torch.compile; short DINO / masked-spectrum pretraining and CLIP alignment throughput; peak GPU
# memory. Prints one table and appends it to benchmarks/RESULTS.md with the GPU model.
#
#   benchmarks/gpu/run.sh                 # on a GPU machine
#   benchmarks/gpu/run.sh --toy --results ''   # CPU-sized check (tests/test_gpu_benchmark.py)
#   PYTHON=.venv/bin/python benchmarks/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" benchmarks/gpu/bench.py "$@"
