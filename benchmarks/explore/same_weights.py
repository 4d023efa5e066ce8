"""Whether two safetensors files hold the same tensors, bit for bit (metadata aside).

Usage:  python benchmarks/explore/same_weights.py A.safetensors B.safetensors

Two runs of a training stage whose files differ only in metadata (paths, times) trained the
same model when this prints ``identical weights: True``.
"""
from __future__ import annotations

import sys


def main() -> None:
    import torch
    from safetensors.torch import load_file

    a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(f"{len(a)} tensors; identical weights: {same}")


if __name__ == "__main__":
    main()
