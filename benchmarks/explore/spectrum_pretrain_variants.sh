#!/bin/bash
# Spectrum pretraining variants judged on the encoder alone (explore/encoder_sim_to_real.py):
# each NAME=OVERRIDES pair pretrains the demo's spectrum config with those dotted overrides
# (space-separated inside one argument) and prints the in-distribution and real-spectrum table,
# on the validation split (choose there; SPLIT=test for the final figures).
#   benchmarks/explore/spectrum_pretrain_variants.sh RUN OUT 'base=' 'noise3=objective.views.noise_max=3'
set -euo pipefail
run=$1 out=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
encs=()
for spec in "$@"; do
  name=${spec%%=*} over=${spec#*=}
  o=$out/$name
  if [ ! -f "$o/encoder.safetensors" ]; then
    s=$(date +%s)
    # shellcheck disable=SC2086
    galclip pretrain spectrum --config "$run/pretrain-spectrum/config.yaml" --data "$run/data" \
        --out "$o" $over > "$o.log" 2>&1
    echo "$name: pretrain $(( $(date +%s) - s )) s ($over)"
  fi
  encs+=("$o/encoder.safetensors")
done
python "$here/encoder_sim_to_real.py" --split "${SPLIT:-val}" --data "$run/data" "${encs[@]}"
