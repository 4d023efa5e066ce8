"""Heads that map a backbone's tokens to the shared CLIP embedding.

As AstroCLIP (Parker et al. 2024, sec. 3.3): one learned query attends over all backbone
tokens (multi-head cross-attention pooling, padded tokens ignored), then an MLP projects the
pooled vector to the shared embedding dimension. The output is not normalized here; the CLIP
model L2-normalizes it.
"""
from __future__ import annotations

import torch
from torch import nn


class CrossAttentionPool(nn.Module):
    """One learned query attending over tokens ``(B, T, D)`` -> ``(B, D)``."""

    def __init__(self, dim: int, num_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"head num_heads={num_heads} must divide the token width {dim}")
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim ** -0.5)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """``padding_mask (B, T)`` True marks a token to ignore (a fully masked row attends to all)."""
        b = tokens.shape[0]
        if padding_mask is not None:
            padding_mask = padding_mask.bool() & ~padding_mask.bool().all(dim=1, keepdim=True)
        kv = self.norm(tokens)  # (B, T, D)
        q = self.query.expand(b, -1, -1)  # (B, 1, D)
        pooled, _ = self.attn(q, kv, kv, key_padding_mask=padding_mask, need_weights=False)
        return pooled[:, 0]  # (B, D); index, never squeeze (batch of one)


class ProjectionHead(nn.Module):
    """Cross-attention pooling then an MLP ``D -> hidden -> embed_dim``."""

    def __init__(self, in_dim: int, embed_dim: int = 512, num_heads: int = 4,
                 mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(round(in_dim * mlp_ratio))
        self.pool = CrossAttentionPool(in_dim, num_heads, dropout)
        self.mlp = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, embed_dim))

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self.mlp(self.pool(tokens, padding_mask))  # (B, embed_dim)
