"""In-memory cache of frozen backbone outputs, so alignment epochs after the first run only
the heads (the backbones dominate the cost of a frozen-backbone step on CPU).

Keys name a galaxy and its view (e.g. ``(object_id, rotation, flip)`` for an augmented cutout):
a frozen backbone in eval mode maps the same view to the same tokens, so caching changes no
result, only the time. Tokens are stored in float16 on the CPU until ``max_bytes`` is reached;
later misses are computed and not stored. Every floating-point output, cached or fresh, is
rounded to float16 the same way, so what a batch gets never depends on what the cache holds:
a resumed run (whose cache starts empty) trains on the very features of the uninterrupted one,
and the cache needs no place in a checkpoint.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch

Features = dict[str, torch.Tensor]


def _stored(v: torch.Tensor) -> torch.Tensor:
    """A backbone output as the cache keeps it: detached, floating point in float16."""
    v = v.detach()
    return v.to(torch.float16) if v.is_floating_point() else v


class FeatureCache:
    def __init__(self, max_bytes: float):
        self.max_bytes, self.bytes = float(max_bytes), 0
        self.store: dict[Hashable, Features] = {}
        self.hits = self.misses = 0

    def _put(self, key: Hashable, row: Features) -> None:
        kept = {k: v.to("cpu") for k, v in row.items()}
        size = sum(v.numel() * v.element_size() for v in kept.values())
        if self.bytes + size <= self.max_bytes:
            self.store[key] = kept
            self.bytes += size

    def get(self, keys: Sequence[Hashable], compute: Callable[[list[int]], Features],
            device: torch.device) -> Features:
        """Backbone outputs for ``keys``: cached rows, or ``compute(all row indices)`` when one misses.

        Every tensor of the backbone's output (``tokens``, ``pooled``, ``padding_mask``, ...) is
        kept; floating-point ones come back as float32."""
        miss = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits, self.misses = self.hits + len(keys) - len(miss), self.misses + len(miss)
        # a miss computes the whole batch, not the missing rows alone: CPU kernels give a row of
        # a one-row batch other last bits than the same row in a full one, so the rows a batch
        # misses (which depend on what earlier steps stored) must not set the shape
        fresh: Features = compute(list(range(len(keys)))) if miss else {}
        where = {i: i for i in miss}
        rows: list[Features] = []
        for i, key in enumerate(keys):
            if i in where:
                row = {k: _stored(v[where[i]]) for k, v in fresh.items()}
                self._put(key, row)
            else:
                row = self.store[key]
            rows.append(row)
        out = {}
        for k, first in rows[0].items():
            dtype = torch.float32 if first.is_floating_point() else first.dtype
            # every row holds float16 (fresh ones rounded as stored ones, whatever the backbone
            # gave: bfloat16 under bf16 autocast); they come back in float32
            out[k] = torch.stack([r[k].to(dtype) for r in rows]).to(device)
        return out
