#!/bin/bash
# The sim-to-real benchmark of trained models looked up in one reference dataset (RESULTS.md,
# "The demo's reference galaxies"): for each model, embed the dataset into a catalog, index it
# with the OOD redshift check, and run benchmarks/sim_to_real.py on it.
#   usage: reference_catalog_seeds.sh DATA OUT MORE_DIR MODEL...
#   e.g.   reference_catalog_seeds.sh runs/demo/data /tmp/ref /work/realmore \
#              /work/noise/s1-t015/align/model.safetensors /work/noise/s2-t015/align/model.safetensors
# DATA: a dataset the models may look up (e.g. `galclip simulate --n 5000 --reference 15000`);
# MORE_DIR: a folder of extra Andes tables (benchmarks/andes_history.sh), one subfolder each.
set -euo pipefail
DATA=$1 OUT=$2 MORE=$3
shift 3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
mkdir -p "$OUT"
i=0
for M in "$@"; do
  i=$((i + 1))
  C=$OUT/catalog-$i
  t0=$(date +%s)
  "$PY" -m galclip.cli embed --model "$M" --data "$DATA" --out "$C" > "$OUT/embed-$i.log" 2>&1
  "$PY" -m galclip.cli index "$C" --ood-templates >> "$OUT/embed-$i.log" 2>&1
  echo "model $i ($M): embed + index $(( $(date +%s) - t0 )) s"
  PYTHONPATH=$ROOT/src "$PY" "$ROOT/benchmarks/sim_to_real.py" --catalog "$C" --data "$DATA" \
    --more "$MORE"/* --json "$OUT/s2r-$i.json" > "$OUT/s2r-$i.log" 2>&1
  grep "^| BGS+LRG in sim range\|control sim held-out" "$OUT/s2r-$i.log"
done
