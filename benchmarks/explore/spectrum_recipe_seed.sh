#!/bin/bash
# A spectrum pretraining recipe change on another training seed, judged end to end: for each
# NAME=OVERRIDES pair (dotted overrides of the spectrum-cpu preset, space-separated inside one
# argument) pretrain the spectrum encoder, align, embed + index (with the OOD template basis),
# score the galclip rows of `galclip evaluate` (baselines off) and the real DESI spectra
# (benchmarks/sim_to_real.py), on a finished demo's data and random image init.
#   benchmarks/explore/spectrum_recipe_seed.sh RUN OUT SEED NAME=OVERRIDES...
#   e.g. runs/demo /tmp/noise 1 'n1=objective.views.noise_max=1' 'n3=objective.views.noise_max=3'
set -euo pipefail
run=$1 out=$2 seed=$3; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
for spec in "$@"; do
  name=${spec%%=*} over=${spec#*=}
  o=$out/s$seed-$name
  mkdir -p "$o"
  s=$(date +%s)
  # shellcheck disable=SC2086
  galclip pretrain spectrum --config spectrum-cpu --data "$run/data" --out "$o/pretrain" \
      seed="$seed" $over > "$o/pretrain.log" 2>&1
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
  echo "seed $seed $name ($over): pretrain $((a - s)) s, align $((b - a)) s, rest $(( $(date +%s) - b )) s"
done
