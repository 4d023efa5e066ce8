#!/bin/bash
# Two versions of `galclip predict` started together on the same catalogs, so that both see the
# same load on a shared machine; prints each one's wall time, user + sys CPU seconds and peak RSS,
# then compares the two outputs (benchmarks/explore/predict_same_output.py).
#   benchmarks/explore/predict_side_by_side.sh BEFORE_SRC AFTER_SRC W [QUERY]
# W: a --workdir of benchmarks/predict_throughput.py (W/ref with its index, W/query); QUERY: the
# query catalog folder under W (default query). Outputs go to W/QUERY-before.parquet, -after.
set -euo pipefail
BEFORE=$1 AFTER=$2 W=$3 Q=${4:-query}
PY=${PYTHON:-python}
run() {
  /usr/bin/time -f "$1: %e s wall, %U user + %S sys CPU s, peak RSS %M kB" env PYTHONPATH="$2" \
    "$PY" -m galclip.cli predict "$W/$Q" --reference "$W/ref" --out "$W/$Q-$1.parquet" \
    --chunk-rows 8192 --properties redshift,log_mstar 2>&1 | tail -1
}
echo "load before: $(cut -d' ' -f1 /proc/loadavg)"
run before "$BEFORE" > "$W/.side-before.txt" &
run after "$AFTER" > "$W/.side-after.txt" &
wait
cat "$W/.side-before.txt" "$W/.side-after.txt"
echo "load after: $(cut -d' ' -f1 /proc/loadavg)"
PYTHONPATH="$AFTER" "$PY" "$(dirname "$0")/predict_same_output.py" "$W/$Q-before.parquet" "$W/$Q-after.parquet"
