#!/bin/bash
# The older versions of DESIHIGH's "Andes" student tables (the same mini-SV tiles, 2020-03-15,
# with 25 targets per programme instead of the 5 in ../shared/data/real/desi-andes), extracted
# from a clone of github.com/DESIHIGH/desihigh into OUT/<commit>/ for
# `benchmarks/sim_to_real.py --more OUT/*`. Nothing is downloaded: CLONE is a local clone.
#   benchmarks/andes_history.sh CLONE OUT
set -euo pipefail
clone=$1 out=$2
for c in fdb75c8 8fe0ec3 296a9b7; do
  mkdir -p "$out/$c"
  git -C "$clone" ls-tree -r "$c" -- student_andes/ | while read -r _ _ sha path; do
    git -C "$clone" cat-file -p "$sha" > "$out/$c/$(basename "$path")"
  done
  echo "$out/$c: $(ls "$out/$c" | wc -l) files"
done
