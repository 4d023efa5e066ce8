"""Seeded corruptions of a file's bytes, for fuzz tests and the reliability campaign
(``benchmarks/reliability.py``): truncations, flipped bytes (half of them in the first 40 %,
where headers and tables live), and zeroed or random 4 KiB blocks."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def byte_variants(data: bytes, rng: np.random.Generator, n: int) -> Iterator[tuple[str, bytes]]:
    """``n`` corrupted copies of ``data`` as (name, bytes): about 1 in 4 truncated, 1 in 8 a
    damaged block, the rest with 1-4 flipped bytes."""
    size = len(data)
    for k in range(n):
        kind = rng.random()
        if kind < 0.25:
            cut = int(rng.integers(0, size))
            yield f"truncate-{cut}", data[:cut]
            continue
        b = bytearray(data)
        if kind < 0.375 and size > 4096:
            start = int(rng.integers(0, size - 4096))
            b[start:start + 4096] = bytes(4096) if k % 2 == 0 else rng.bytes(4096)
            yield f"block-{start}", bytes(b)
            continue
        hi = int(size * 0.4) if k % 2 == 0 else size
        where = rng.integers(0, max(hi, 1), size=1 + k % 4)
        for pos in where:
            b[int(pos)] ^= int(rng.integers(1, 256))
        yield f"flip-{'-'.join(str(int(p)) for p in where)}", bytes(b)
