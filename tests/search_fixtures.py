"""Shared, module-scoped set-up for the search tests: a small latent dataset, its catalog made
with the deterministic stand-in model (through the real ``iter_embeddings``), and a catalog
made with a real tiny GalaxyCLIP (nano encoders) saved and reloaded as a checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Built:
    data: Path
    model_path: Path
    catalog: Path
    model: object


def build_all(root: Path) -> Built:
    """Dataset + stand-in model checkpoint + its catalog with saved (exact) indexes."""
    import torch

    from galclip.search.catalog import build_catalog
    from galclip.search.index import build_index
    from search_helpers import make_fake_model, write_latent_dataset

    data = write_latent_dataset(root / "data")
    model = make_fake_model()
    model_path = root / "fake.pt"
    torch.save(model.state_dict(), model_path)
    build_catalog(model, data, root / "catalog", model_path=model_path, rows_per_shard=32,
                  batch_size=16, progress=False)
    for m in ("image", "spectrum"):
        build_index(root / "catalog", m, verbose=False)
    return Built(data, model_path, root / "catalog", model)


def build_real(root: Path) -> Built:
    """A real tiny GalaxyCLIP (untrained nano encoders) saved as a checkpoint and embedded with
    the `galclip embed` command (galclip.load_model, iter_embeddings): the production path."""
    import torch

    import galclip
    from galclip.cli import main
    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP, save_model
    from search_helpers import write_latent_dataset

    torch.manual_seed(0)
    tiny = GalaxyCLIP(create_encoder("image-nano", depth=1), create_encoder("spectrum-nano", depth=1),
                      embed_dim=8)
    model_path = save_model(tiny, root / "tiny.safetensors")
    data = write_latent_dataset(root / "data-small", shards=(10, 7))
    rc = main(["embed", "--model", str(model_path), "--data", str(data), "--out",
               str(root / "catalog-real"), "--rows-per-shard", "8", "--batch-size", "6"])
    assert rc == 0
    return Built(data, model_path, root / "catalog-real", galclip.load_model(model_path))


def fits_bytes_image(image: np.ndarray, pad: int = 0) -> bytes:
    """A cutout FITS file (primary HDU (3, H, W)), optionally padded to a larger cutout."""
    import io

    from astropy.io import fits

    cube = np.pad(image, ((0, 0), (pad, pad), (pad, pad))) if pad else image
    buf = io.BytesIO()
    fits.PrimaryHDU(cube.astype(np.float32)).writeto(buf)
    return buf.getvalue()


def fits_bytes_spectrum(flux: np.ndarray, ivar: np.ndarray) -> bytes:
    """A spectrum FITS file: a binary table with wavelength, flux and ivar columns."""
    import io

    from astropy.io import fits

    from galclip import conventions as C

    cols = [fits.Column(name="wavelength", format="D", array=C.wavelength_grid()),
            fits.Column(name="flux", format="E", array=flux),
            fits.Column(name="ivar", format="E", array=ivar)]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(buf)
    return buf.getvalue()


def serve_in_thread(app, **config):
    """A live uvicorn server for ``app`` on a free loopback port, in a daemon thread: a generator
    for a pytest fixture (yields the port; stops the server after). ``config``: uvicorn.Config
    keywords (e.g. ``http=timed_protocol(...)``)."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(5)
