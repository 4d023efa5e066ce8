#!/bin/bash
# Does the CPU demo's alignment need its 28 epochs? Realign a finished demo's data with fewer
# epochs (its own config, so the same frozen pretrained spectrum encoder and random image
# init) and score the galclip rows only (supervised baselines off: they do not depend on it).
#   benchmarks/explore/align_epochs.sh RUN OUT EPOCHS...   e.g. runs/demo /tmp/alignx 20 14
set -euo pipefail
run=$1 out=$2; shift 2
for e in "$@"; do
  o=$out/e$e
  start=$(date +%s)
  galclip align --config "$run/align/config.yaml" --data "$run/data" --out "$o/align" \
      trainer.max_epochs="$e" > "$o.align.log" 2>&1
  mid=$(date +%s)
  galclip evaluate --model "$o/align/model.safetensors" --data "$run/data" --out "$o/report" \
      baselines.image.enabled=false baselines.spectrum.enabled=false \
      baselines.unaligned.enabled=false baselines.photometry.enabled=false > "$o.eval.log" 2>&1
  echo "epochs $e: align $((mid - start)) s, evaluate (galclip rows) $(( $(date +%s) - mid )) s"
done
