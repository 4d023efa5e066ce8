"""In-memory cache of frozen backbone outputs, so alignment epochs after the first run only
the heads (the backbones dominate the cost of a frozen-backbone step on CPU).

Keys name a galaxy and its view (e.g. ``(object_id, rotation, flip)`` for an augmented cutout):
a frozen backbone in eval mode maps the same view to the same tokens, so caching changes no
result, only the time. Tokens are stored in float16 on the CPU until ``max_bytes`` is reached;
later misses are computed and not stored.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch

Features = dict[str, torch.Tensor]


class FeatureCache:
    def __init__(self, max_bytes: float):
        self.max_bytes, self.bytes = float(max_bytes), 0
        self.store: dict[Hashable, Features] = {}
        self.hits = self.misses = 0

    def _put(self, key: Hashable, row: Features) -> None:
        kept = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().to("cpu"))
                for k, v in row.items()}
        size = sum(v.numel() * v.element_size() for v in kept.values())
        if self.bytes + size <= self.max_bytes:
            self.store[key] = kept
            self.bytes += size

    def get(self, keys: Sequence[Hashable], compute: Callable[[list[int]], Features],
            device: torch.device) -> Features:
        """Backbone outputs for ``keys``: cached rows, plus ``compute(missing row indices)``.

        Every tensor of the backbone's output (``tokens``, ``pooled``, ``padding_mask``, ...) is
        kept; floating-point ones come back as float32."""
        miss = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits, self.misses = self.hits + len(keys) - len(miss), self.misses + len(miss)
        fresh: Features = compute(miss) if miss else {}
        where = {i: j for j, i in enumerate(miss)}
        rows: list[Features] = []
        for i, key in enumerate(keys):
            if i in where:
                row = {k: v[where[i]] for k, v in fresh.items()}
                self._put(key, row)
            else:
                row = self.store[key]
            rows.append(row)
        out = {}
        for k, first in rows[0].items():
            dtype = torch.float32 if first.is_floating_point() else first.dtype
            # one dtype before stacking: stored rows are float16, fresh ones whatever the backbone
            # gave (bfloat16 under bf16 autocast, which refuses to stack the two)
            out[k] = torch.stack([r[k].to(dtype) for r in rows]).to(device)
        return out
