"""Toy galaxies with some structure, for pretraining tests: exponential-profile blobs whose size
and colour depend on redshift, and spectra with redshifted emission lines, noise and a stretch of
bad pixels (ivar = 0)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from galclip import conventions as C

BAD = slice(2000, 2040)  # spectrum pixels marked bad in every toy spectrum


def _images(rng, n: int, z: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[:C.IMAGE_SIZE, :C.IMAGE_SIZE] - (C.IMAGE_SIZE - 1) / 2
    r_half = rng.uniform(2, 10, n) * (1 - z)
    q, pa = rng.uniform(0.3, 1, n)[:, None, None], rng.uniform(0, np.pi, n)[:, None, None]
    u = xx * np.cos(pa) + yy * np.sin(pa)
    v = (-xx * np.sin(pa) + yy * np.cos(pa)) / q
    prof = np.exp(-1.68 * np.hypot(u, v) / r_half[:, None, None])
    prof /= prof.sum((1, 2), keepdims=True)
    flux = 10 ** rng.uniform(0, 1.5, n)
    colour = np.stack([0.5 - z, np.ones(n), 1 + 2 * z], 1)                 # (n, bands)
    img = flux[:, None, None, None] * colour[:, :, None, None] * prof[:, None]
    return img + rng.normal(size=img.shape) * np.array([0.0066, 0.01, 0.025])[None, :, None, None]


def _spectra(rng, n: int, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wave = C.wavelength_grid()
    spec = 1 + 0.3 * np.sin(wave[None] / 700 + rng.uniform(0, 6, (n, 1)))
    for line, amp in ((3727.0, 3), (4861.0, 2), (5007.0, 4), (6563.0, 6)):
        obs = line * (1 + z[:, None])
        spec = spec + amp * rng.uniform(0.2, 1, (n, 1)) * np.exp(-0.5 * ((wave[None] - obs) / 3) ** 2)
    ivar = np.full((n, C.N_WAVE), 4.0)
    ivar[:, BAD] = 0
    return spec + rng.normal(size=spec.shape) * 0.5, ivar


def toy_rows(n: int, seed: int = 0, start_id: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.5, n)
    flux, ivar = _spectra(rng, n, z)
    return {"object_id": np.arange(start_id, start_id + n, dtype=np.int64),
            "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 10, n),
            "redshift": z.astype(np.float32), "image": _images(rng, n, z).astype(np.float32),
            "spectrum_flux": flux.astype(np.float32), "spectrum_ivar": ivar.astype(np.float32)}


def write_toy_dataset(out: Path, n_per_shard: int = 12, n_shards: int = 2) -> Path:
    from galclip.data import Provenance, shard_name, write_manifest, write_shard

    out.mkdir(parents=True)
    shards = [write_shard(out / shard_name(i), toy_rows(n_per_shard, seed=i, start_id=i * n_per_shard))
              for i in range(n_shards)]
    write_manifest(out, shards, Provenance(command="test", seed=0))
    return out
