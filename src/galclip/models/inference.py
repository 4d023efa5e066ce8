"""Embedding a dataset with a trained GalaxyCLIP: the one inference path of evaluate and embed.

``iter_embeddings`` puts the model in eval mode, runs under ``torch.inference_mode()``, reads the
dataset in order with ``drop_last=False`` (every row is kept) and yields ``object_id`` aligned
with the embeddings; the model's previous train/eval mode is restored afterwards.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

MODALITIES = ("image", "spectrum")
_COLUMNS = {"image": ("image",), "spectrum": ("spectrum_flux", "spectrum_ivar")}


def _columns(modalities: Sequence[str]) -> list[str]:
    bad = [m for m in modalities if m not in MODALITIES]
    if bad or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {tuple(modalities)}")
    return ["object_id", *(c for m in modalities for c in _COLUMNS[m])]


def _batches(dataset: Any, batch_size: int, columns: list[str]) -> Iterator[dict[str, Any]]:
    """In-order batches: streamed from Parquet for a GalaxyDataset, else a DataLoader."""
    if hasattr(dataset, "iter_batches") and getattr(dataset, "transform", None) is None:
        yield from dataset.iter_batches(batch_size, columns)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False,
                        num_workers=0)
    for batch in loader:
        missing = [c for c in columns if c not in batch]
        if missing:
            raise ValueError(f"dataset rows lack column(s) {missing} needed for embedding")
        yield batch


def iter_embeddings(model: Any, dataset: Any, batch_size: int = 64, device: Any = None,
                    modalities: Sequence[str] = MODALITIES) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{"object_id", "image_embedding", "spectrum_embedding"}`` per batch, in dataset order.

    Only the requested modalities are embedded. Embeddings are float32 numpy ``(B, E)``, unit norm.
    ``device=None`` keeps the model where it is; otherwise the model is moved there.
    """
    import torch

    columns = _columns(modalities)
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in _batches(dataset, batch_size, columns):
                yield _embed_batch(model, batch, modalities, dev)
    finally:
        model.train(was_training)


def _embed_batch(model: Any, batch: dict[str, Any], modalities: Sequence[str], dev: Any
                 ) -> dict[str, np.ndarray]:
    import torch

    def t(x: Any) -> torch.Tensor:
        return torch.as_tensor(x if torch.is_tensor(x) else np.require(x, np.float32, "W"),
                               dtype=torch.float32).to(dev)

    ids = batch["object_id"]
    out = {"object_id": np.asarray(ids.cpu() if torch.is_tensor(ids) else ids, dtype=np.int64)}
    if "image" in modalities:
        out["image_embedding"] = model.encode_image(t(batch["image"])).float().cpu().numpy()
    if "spectrum" in modalities:
        z = model.encode_spectrum(t(batch["spectrum_flux"]), t(batch["spectrum_ivar"]))
        out["spectrum_embedding"] = z.float().cpu().numpy()
    return out


def embed_dataset(model: Any, dataset: Any, batch_size: int = 64, device: Any = None,
                  modalities: Sequence[str] = MODALITIES, progress: bool = False
                  ) -> dict[str, np.ndarray]:
    """All of ``iter_embeddings`` concatenated: one row per dataset row, ids aligned."""
    parts = iter_embeddings(model, dataset, batch_size, device, modalities)
    if progress:
        from tqdm.auto import tqdm

        parts = tqdm(parts, total=-(-len(dataset) // batch_size), desc="embedding", unit="batch")
    chunks = list(parts)
    keys = ["object_id"] + [f"{m}_embedding" for m in modalities]
    if not chunks:
        dim = int(getattr(model, "embed_dim", 0))
        return {k: np.zeros((0,) if k == "object_id" else (0, dim),
                            dtype=np.int64 if k == "object_id" else np.float32) for k in keys}
    return {k: np.concatenate([c[k] for c in chunks]) for k in keys}
