"""Gathering embeddings across DDP ranks with gradients, so contrastive negatives span the
global batch (as open_clip's ``gather_features``; AstroCLIP used the local batch only).

``gather_with_grad(x)`` returns the concatenation over ranks of every rank's ``x`` (ranks in
order); in the backward pass each rank receives the sum over ranks of the gradient with respect
to its own rows. When every rank computes the same global loss, this sum is ``world_size``
times the single-process gradient, and DDP's gradient averaging divides it back: parameters get
exactly the gradient of one process on the concatenated batch (tested in tests/test_clip_ddp.py).
Ranks may hold different numbers of rows (the last batch of an epoch).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 (rows padded to the largest rank); backward: all-reduce, slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        sizes = _gather_sizes(x.shape[0], x.device)
        rank, longest = dist.get_rank(), max(sizes)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0)  # (sum(sizes), ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start: start + ctx.sizes[ctx.rank]]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (N_rank, ...) from all ranks, differentiably; identity without DDP."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks (for evaluation); identity without DDP."""
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
