"""Per-test time of two pytest runs (JUnit XML): totals, the tests both have, the largest moves.

  python -m pytest -q --junitxml=before.xml   # at each checkout
  python benchmarks/explore/junit_compare.py before.xml after.xml
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def load(path: str) -> dict[str, float]:
    return {f"{tc.get('classname')}::{tc.get('name')}": float(tc.get("time"))
            for tc in ET.parse(path).getroot().iter("testcase")}


def main(before: str, after: str) -> None:
    a, b = load(before), load(after)
    common = set(a) & set(b)
    print(f"before {len(a)} tests {sum(a.values()):.0f} s; after {len(b)} tests {sum(b.values()):.0f} s")
    print(f"the {len(common)} tests both have: {sum(a[k] for k in common):.0f} s -> "
          f"{sum(b[k] for k in common):.0f} s")
    new, gone = set(b) - set(a), set(a) - set(b)
    print(f"new tests {len(new)} ({sum(b[k] for k in new):.0f} s); "
          f"removed {len(gone)} ({sum(a[k] for k in gone):.0f} s)")
    moved = sorted(common, key=lambda k: b[k] - a[k])
    for k in moved[-6:][::-1] + moved[:4]:
        print(f"  {b[k] - a[k]:+6.1f} s  {a[k]:6.1f} -> {b[k]:6.1f}  {k}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
