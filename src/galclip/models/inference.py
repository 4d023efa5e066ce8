"""Embedding a dataset with a trained GalaxyCLIP: the one inference path of evaluate and embed.

``iter_embeddings`` puts the model in eval mode, runs under ``torch.inference_mode()``, reads the
dataset in order with ``drop_last=False`` (every row is kept) and yields ``object_id`` aligned
with the embeddings; the model's previous train/eval mode is restored afterwards. On a GPU it
runs under bf16 autocast (embeddings come back as float32) and can keep the GPU fed from
``num_workers`` DataLoader worker processes that decode Parquet ahead of the model into pinned
memory (``prefetch`` batches each), copied to the device without blocking.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from galclip.modalities import BATCH_SIZE, MODALITIES, NAMES, input_columns


def _batches(dataset: Any, batch_size: int, columns: list[str], num_workers: int = 0,
             pin_memory: bool = False, prefetch: int = 2) -> Iterator[dict[str, Any]]:
    """In-order batches: streamed from Parquet for a GalaxyDataset (by worker processes for a
    dataset with ``row_range``, e.g. a catalog shard's rows), else a DataLoader."""
    streams = hasattr(dataset, "iter_batches") and getattr(dataset, "transform", None) is None
    if streams and num_workers > 0 and hasattr(dataset, "row_range"):
        yield from _worker_batches(dataset, batch_size, columns, num_workers, pin_memory, prefetch)
        return
    if streams:
        yield from dataset.iter_batches(batch_size, columns)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                        num_workers=num_workers, pin_memory=pin_memory,
                        prefetch_factor=prefetch if num_workers else None)
    for batch in loader:
        missing = [c for c in columns if c not in batch]
        if missing:
            raise ValueError(f"dataset rows lack column(s) {missing} needed for embedding")
        yield batch


class StridedBatches(IterableDataset):
    """Batches of a row-range dataset for DataLoader workers: worker w of W reads batches
    w, w + W, w + 2W, ...; the DataLoader takes one batch from each worker in turn, so the
    stream stays in dataset order."""

    def __init__(self, dataset: Any, batch_size: int, columns: list[str]):
        self.dataset, self.batch_size, self.columns = dataset, batch_size, columns

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        w, n_w = (info.id, info.num_workers) if info else (0, 1)
        n, b = len(self.dataset), self.batch_size
        for lo in range(w * b, n, n_w * b):
            yield from self.dataset.row_range(lo, min(lo + b, n)).iter_batches(b, self.columns)


def _worker_batches(dataset: Any, batch_size: int, columns: list[str], num_workers: int,
                    pin_memory: bool, prefetch: int) -> Iterator[dict[str, Any]]:
    from torch.utils.data import DataLoader

    n_batches = -(-len(dataset) // batch_size)
    yield from DataLoader(StridedBatches(dataset, batch_size, columns), batch_size=None,
                          num_workers=max(1, min(num_workers, n_batches)),
                          pin_memory=pin_memory, prefetch_factor=prefetch)


def autocast(device: Any):
    """The precision policy of inference: bf16 autocast on a GPU, plain fp32 elsewhere."""
    import contextlib

    import torch

    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)


def iter_embeddings(model: Any, dataset: Any, batch_size: int = BATCH_SIZE, device: Any = None,
                    modalities: Sequence[str] = NAMES, num_workers: int = 0,
                    prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{"object_id", "image_embedding", "spectrum_embedding"}`` per batch, in dataset order.

    Only the requested modalities are embedded. Embeddings are float32 numpy ``(B, E)``, unit norm.
    ``device=None`` keeps the model where it is; otherwise the model is moved there.
    ``num_workers`` > 0 decodes batches in that many worker processes (pinned memory on a GPU).
    """
    import torch

    columns = input_columns(modalities)
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    batches = _batches(dataset, batch_size, columns, num_workers, dev.type == "cuda", prefetch)
    try:
        with torch.inference_mode(), autocast(dev):
            for batch in batches:
                yield _embed_batch(model, batch, modalities, dev)
    finally:
        model.train(was_training)


def _embed_batch(model: Any, batch: dict[str, Any], modalities: Sequence[str], dev: Any
                 ) -> dict[str, np.ndarray]:
    import torch

    def t(x: Any) -> torch.Tensor:
        return torch.as_tensor(x if torch.is_tensor(x) else np.require(x, np.float32, "W"),
                               dtype=torch.float32).to(dev, non_blocking=True)

    ids = batch["object_id"]
    out = {"object_id": np.asarray(ids.cpu() if torch.is_tensor(ids) else ids, dtype=np.int64)}
    for name in modalities:
        m = MODALITIES[name]
        out[m.embedding_column] = m.encode(model, batch, t).float().cpu().numpy()
    return out


def embed_dataset(model: Any, dataset: Any, batch_size: int = BATCH_SIZE, device: Any = None,
                  modalities: Sequence[str] = NAMES, progress: bool = False
                  ) -> dict[str, np.ndarray]:
    """All of ``iter_embeddings`` concatenated: one row per dataset row, ids aligned."""
    parts = iter_embeddings(model, dataset, batch_size, device, modalities)
    if progress:
        from tqdm.auto import tqdm

        parts = tqdm(parts, total=-(-len(dataset) // batch_size), desc="embedding", unit="batch")
    chunks = list(parts)
    keys = ["object_id"] + [MODALITIES[m].embedding_column for m in modalities]
    if not chunks:
        dim = int(getattr(model, "embed_dim", 0))
        return {k: np.zeros((0,) if k == "object_id" else (0, dim),
                            dtype=np.int64 if k == "object_id" else np.float32) for k in keys}
    return {k: np.concatenate([c[k] for c in chunks]) for k in keys}
