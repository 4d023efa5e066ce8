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
        self.store: dict[Hashable, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.hits = self.misses = 0

    def _put(self, key: Hashable, tokens: torch.Tensor, mask: torch.Tensor | None) -> None:
        size = tokens.numel() * 2 + (mask.numel() if mask is not None else 0)
        if self.bytes + size <= self.max_bytes:
            self.store[key] = (tokens.detach().to("cpu", torch.float16),
                               None if mask is None else mask.detach().to("cpu"))
            self.bytes += size

    def get(self, keys: Sequence[Hashable], compute: Callable[[list[int]], Features],
            device: torch.device) -> Features:
        """Backbone outputs for ``keys``: cached rows, plus ``compute(missing row indices)``."""
        miss = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits, self.misses = self.hits + len(keys) - len(miss), self.misses + len(miss)
        fresh: Features = compute(miss) if miss else {}
        rows_t, rows_m = [], []
        where = {i: j for j, i in enumerate(miss)}
        for i, key in enumerate(keys):
            if i in where:
                j = where[i]
                mask = fresh.get("padding_mask")
                t, m = fresh["tokens"][j].float(), None if mask is None else mask[j]
                self._put(key, t, m)
            else:
                t, m = self.store[key]
            rows_t.append(t.to(device, torch.float32))
            rows_m.append(None if m is None else m.to(device))
        out = {"tokens": torch.stack(rows_t)}  # (B, T, D)
        if rows_m[0] is not None:
            out["padding_mask"] = torch.stack(rows_m)  # (B, T)
        return out
