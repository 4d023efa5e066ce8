#!/bin/bash
# Does the CPU demo's spectrum pretraining need its 200 steps? Pretrain again with fewer steps
# (the demo's own pretraining config, its cosine schedule compressed), realign with the demo's
# alignment config on that encoder, score the galclip rows (baselines off).
#   benchmarks/explore/pretrain_steps.sh RUN OUT STEPS...   e.g. runs/demo /tmp/pre 120
set -euo pipefail
run=$1 out=$2; shift 2
for n in "$@"; do
  o=$out/p$n
  s=$(date +%s)
  galclip pretrain spectrum --config "$run/pretrain-spectrum/config.yaml" --data "$run/data" \
      --out "$o/pretrain" trainer.max_steps="$n" > "$o.pre.log" 2>&1
  a=$(date +%s)
  galclip align --config "$run/align/config.yaml" --data "$run/data" --out "$o/align" \
      model.spectrum_checkpoint="$o/pretrain/encoder.safetensors" > "$o.align.log" 2>&1
  b=$(date +%s)
  galclip evaluate --model "$o/align/model.safetensors" --data "$run/data" --out "$o/report" \
      baselines.image.enabled=false baselines.spectrum.enabled=false \
      baselines.unaligned.enabled=false baselines.photometry.enabled=false > "$o.eval.log" 2>&1
  echo "pretrain $n steps $((a - s)) s, align $((b - a)) s, evaluate $(( $(date +%s) - b )) s"
done
