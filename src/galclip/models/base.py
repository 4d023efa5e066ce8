"""What every encoder shares: its config dataclass ``cfg`` is the whole description of the model."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any


class EncoderConfigMixin:
    """``embed_dim`` and ``config`` (the dict that rebuilds the encoder) from ``self.cfg``."""

    cfg: Any

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def config(self) -> dict[str, Any]:
        return asdict(self.cfg)
