"""Are two simulations of the same config identical apart from the catalogue photometry?

The measured fluxes ``flux_g/r/z`` draw their noise from their own generator, so a dataset
simulated before they were added (``--old``, whose ``flux_g/r/z`` were the true fluxes) and
one simulated after (``--new``) must agree bit for bit on every other column, and the old
``flux_{b}`` must equal the new ``flux_{b}_true``. Prints one line per column and exits 1 on
any difference.

    python benchmarks/explore/sim_columns_identical.py --old /work/runs-demo3/data --new /tmp/new
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

RENAMED = {f"flux_{b}": f"flux_{b}_true" for b in "grz"}   # old name -> new name


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (NaNs with the same bits are equal)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "OUS":
        return bool(np.array_equal(a, b))
    return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                               np.ascontiguousarray(b).view(np.uint8)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    args = ap.parse_args()
    from galclip.data import open_dataset

    old, new = open_dataset(args.old), open_dataset(args.new)
    if len(old) != len(new):
        sys.exit(f"row counts differ: {len(old)} vs {len(new)}")
    pairs = {c: RENAMED.get(c, c) for c in old.columns}
    missing = [n for n in pairs.values() if n not in new.columns]
    if missing:
        sys.exit(f"{args.new}: lacks column(s) {missing}")
    equal = dict.fromkeys(pairs, True)
    for c, n in pairs.items():   # one column at a time keeps the images' memory small
        for a, b in zip(old.iter_batches(256, [c]), new.iter_batches(256, [n]), strict=True):
            equal[c] &= same(a[c], b[n])
    for c, n in pairs.items():
        print(f"{c:24s} -> {n:24s} {'identical' if equal[c] else 'DIFFERENT'}")
    added = sorted(set(new.columns) - set(pairs.values()))
    print(f"{len(old)} rows; {sum(equal.values())}/{len(equal)} columns identical; "
          f"new columns: {added}")
    sys.exit(0 if all(equal.values()) else 1)


if __name__ == "__main__":
    main()
