#!/bin/bash
# The calibration view of spectrum pretraining (objective.views.calib_rms) on another training
# seed (explore/spectrum_recipe_seed.sh with one calib_rms per run; outputs in OUT/sSEED-cCALIB).
#   benchmarks/explore/calib_seed.sh RUN OUT SEED CALIB...   e.g. runs/demo /tmp/calib 1 0.1 0.0
set -euo pipefail
run=$1 out=$2 seed=$3; shift 3
specs=()
for c in "$@"; do specs+=("c$c=objective.views.calib_rms=$c"); done
exec "$(dirname "$0")/spectrum_recipe_seed.sh" "$run" "$out" "$seed" "${specs[@]}"
