#!/bin/bash
# Run-to-run noise of the test file whose time moved most between two checkouts (issue 12):
# tests/test_sim.py three times at each, alternating. Paths: the before checkout (/work/wt-old,
# commit 4dab45e) and main; edit them for another machine.
for rep in 1 2 3; do
  for c in old main; do
    d=/work/wt-old; [ $c = main ] && d=/work/main
    cd $d && s=$(date +%s.%N)
    PYTHONPATH=$d/src /work/main/.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_sim.py > /dev/null 2>&1; rc=$?
    echo "$c rep $rep rc $rc $(echo "$(date +%s.%N) - $s" | bc) s"
  done
done
