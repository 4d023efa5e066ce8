"""Seeded corruptions of a file, for fuzz tests and the reliability campaign
(``benchmarks/reliability.py``): of its bytes (truncations, flipped bytes, half of them in the
first 40 % where headers and tables live, zeroed or random 4 KiB blocks), and of its values
(one element of a field set to a physically impossible value, :data:`IMPOSSIBLE`)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

nan, inf = float("nan"), float("inf")
#: kind of field -> values outside the ranges of galclip.data.readers (none is a legal sentinel
#: of its field: a Stein z_spec may be NaN or -99, AstroCLIP flux may be NaN, so those kinds
#: leave them out)
IMPOSSIBLE = {
    "ra": (nan, inf, -inf, -1.0, 360.0, 1e30),
    "dec": (nan, inf, -inf, -90.5, 95.0, 1e30),
    "header-dec": (95.0, -91.0, 1e30),                       # FITS cards hold no NaN / inf
    "redshift": (nan, inf, -inf, -0.5, 9.0, 1e6),
    "z_spec": (inf, -inf, 9.0, 1e6),
    "flux": (nan, inf, -inf, 3e38, -1e30, 2e6),
    "finite-flux": (3e38, -1e30, 2e6),
    "ivar": (nan, inf, -inf, -1.0, 1e30, 1e11),
    "pixel": (nan, inf, -inf, 1e30, -1e8, 2e6),
    "log_mstar": (inf, -inf, 3.0, 14.0, 1e30),
    "sfr": (inf, 1e6, 1e30),
    "z_mw": (inf, 0.5, 1e-7),
    "tage_mw": (inf, -inf, -1.0, 20.0),
}


def value_variants(fields: dict[str, tuple[str, tuple[int, ...]]], rng: np.random.Generator,
                   n: int) -> Iterator[tuple[str, str, tuple[int, ...], float]]:
    """``n`` edits (name, field, index, value) of fields {name: (kind, shape)}: a random
    element of a random field set to a random impossible value of its kind."""
    names = sorted(fields)
    for _ in range(n):
        field = names[int(rng.integers(len(names)))]
        kind, shape = fields[field]
        index = tuple(int(rng.integers(s)) for s in shape)
        value = IMPOSSIBLE[kind][int(rng.integers(len(IMPOSSIBLE[kind])))]
        yield f"{field}{list(index)}={value:g}", field, index, value


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
