"""Test data for the search tests: a dataset whose images and spectra carry the same hidden
clustered latent vector (so a CLIP model can learn to match them), and a deterministic
stand-in model that reads the latent back through the CLIP interface
(``encode_image(images)``, ``encode_spectrum(flux, ivar)`` -> unit (B, E)), used where a test
needs a model that is cheap and exactly reproducible (resume, staleness); the round trip uses
a real tiny GalaxyCLIP. ``fake_iter_embeddings`` follows the ``iter_embeddings`` contract.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

LATENT = 12
EMBED = 16


def latent_rows(n: int, seed: int = 0, start_id: int = 0, n_clusters: int = 6,
                noise: float = 0.15) -> dict[str, np.ndarray]:
    """Dataset rows whose image (g band, first row) and spectrum (first pixels) both hold a
    noisy copy of the same clustered latent vector."""
    from galclip import conventions as C

    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(size=(n_clusters, LATENT))
    z = centres[rng.integers(0, n_clusters, n)] + 0.6 * rng.normal(size=(n, LATENT))  # (N, L)
    yy, xx = np.mgrid[:152, :152] - 75.5
    blob = np.exp(-(yy**2 + xx**2) / 200.0).astype(np.float32)
    image = (0.3 * blob + rng.normal(0, 0.01, size=(n, *C.IMAGE_SHAPE))).astype(np.float32)
    z_img = z + noise * rng.normal(size=z.shape)
    for j in range(LATENT):  # latent j -> a horizontal stripe of 12-pixel patches
        image[:, :, _stripe(j), 4:148] += 0.15 * z_img[:, j, None, None, None]
    z_spec = z + noise * rng.normal(size=z.shape)
    flux = (1.0 + rng.normal(0, 0.02, size=(n, C.N_WAVE))).astype(np.float32)
    for j in range(LATENT):  # latent j -> the level of one wavelength block
        flux[:, _block(j)] += 0.5 * z_spec[:, j, None]
    return {
        "object_id": np.arange(start_id, start_id + n, dtype=np.int64) * 7 + 1000,
        "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 10, n),
        "redshift": rng.uniform(0.01, 0.6, n).astype(np.float32),
        "image": image, "spectrum_flux": flux,
        "spectrum_ivar": np.ones((n, C.N_WAVE), np.float32),
        "log_mstar": rng.uniform(8, 12, n).astype(np.float32),
        "has_spectrum": rng.uniform(size=n) > 0.1,
    }


def _stripe(j: int) -> slice:
    return slice(4 + 12 * j, 16 + 12 * j)


def _block(j: int) -> slice:
    width = 7781 // LATENT
    return slice(width * j, width * (j + 1))


def write_latent_dataset(out: Path, shards: tuple[int, ...] = (30, 25, 35), seed: int = 0) -> Path:
    from galclip.data import Provenance, shard_name, write_manifest, write_shard

    out.mkdir(parents=True)
    entries, start = [], 0
    for i, n in enumerate(shards):
        entries.append(write_shard(out / shard_name(i), latent_rows(n, seed + i, start)))
        start += n
    write_manifest(out, entries, Provenance(command="test", seed=seed))
    return out


def make_fake_model():
    import torch

    class FakeCLIP(torch.nn.Module):
        """Reads the latent back and projects it with one shared fixed matrix."""

        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.proj = torch.nn.Parameter(torch.randn(LATENT, EMBED, generator=g))

        def _out(self, z):
            return torch.nn.functional.normalize(z @ self.proj, dim=-1)

        def encode_image(self, images):  # (B, 3, H, W)
            return self._out(torch.stack([images[:, 0, _stripe(j), 4:148].mean((1, 2))
                                          for j in range(LATENT)], 1))

        def encode_spectrum(self, flux, ivar):  # (B, 7781) each
            return self._out(torch.stack([flux[:, _block(j)].mean(1) for j in range(LATENT)], 1))

    return FakeCLIP()


def fake_iter_embeddings(model, dataset, batch_size, device=None, modalities=("image", "spectrum")):
    """The iter_embeddings contract: per batch, in order, every row, eval mode, no grad."""
    import torch

    model.eval()
    cols = ["object_id"] + (["image"] if "image" in modalities else []) + (
        ["spectrum_flux", "spectrum_ivar"] if "spectrum" in modalities else [])
    with torch.inference_mode():
        for b in dataset.iter_batches(batch_size, cols):
            out = {"object_id": torch.from_numpy(np.array(b["object_id"]))}
            if "image" in modalities:
                out["image_embedding"] = model.encode_image(torch.from_numpy(np.array(b["image"])))
            if "spectrum" in modalities:
                out["spectrum_embedding"] = model.encode_spectrum(
                    torch.from_numpy(np.array(b["spectrum_flux"])),
                    torch.from_numpy(np.array(b["spectrum_ivar"])))
            yield out


def clustered_vectors(n: int, dim: int = 32, n_clusters: int = 50, seed: int = 0,
                      spread: float = 0.25) -> np.ndarray:
    """Unit vectors around random cluster centres: embedding-like data for index tests."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
