#!/bin/bash
# The calibration view of spectrum pretraining (objective.views.calib_rms) on another training
# seed: pretrain the spectrum encoder, align, embed + index (with the OOD template basis), score
# the galclip rows of `galclip evaluate` (baselines off) and the real DESI spectra
# (benchmarks/sim_to_real.py), for each calib_rms, on a finished demo's data and random image init.
#   benchmarks/explore/calib_seed.sh RUN OUT SEED CALIB...   e.g. runs/demo /tmp/calib 1 0.1 0.0
set -euo pipefail
run=$1 out=$2 seed=$3; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
for c in "$@"; do
  o=$out/s$seed-c$c
  mkdir -p "$o"
  s=$(date +%s)
  galclip pretrain spectrum --config spectrum-cpu --data "$run/data" --out "$o/pretrain" \
      seed="$seed" objective.views.calib_rms="$c" > "$o/pretrain.log" 2>&1
  a=$(date +%s)
  galclip align --config cpu --data "$run/data" --out "$o/align" seed="$seed" \
      model.image_checkpoint="$run/pretrain-image/encoder.safetensors" \
      model.spectrum_checkpoint="$o/pretrain/encoder.safetensors" > "$o/align.log" 2>&1
  b=$(date +%s)
  galclip embed --model "$o/align/model.safetensors" --data "$run/data" --out "$o/catalog" > "$o/embed.log" 2>&1
  galclip index "$o/catalog" --ood-templates >> "$o/embed.log" 2>&1
  galclip evaluate --model "$o/align/model.safetensors" --data "$run/data" --out "$o/report" \
      --catalog "$o/catalog" baselines.image.enabled=false baselines.spectrum.enabled=false \
      baselines.unaligned.enabled=false baselines.photometry.enabled=false > "$o/eval.log" 2>&1
  python "$here/sim_to_real.py" --catalog "$o/catalog" --data "$run/data" --json "$o/s2r.json" > "$o/s2r.log" 2>&1
  echo "seed $seed calib_rms $c: pretrain $((a - s)) s, align $((b - a)) s, rest $(( $(date +%s) - b )) s"
done
