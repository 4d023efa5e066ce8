"""Self-describing encoder checkpoints: one safetensors file with weights, config and version.

The safetensors metadata holds ``format`` ("galclip-encoder"), ``format_version`` (as the CLIP
file's: a reader refuses a newer one), ``galclip_version`` and ``config`` (the JSON of
``encoder.config``), so :func:`load_encoder` rebuilds the model with no
other file and no training code.
"""
from __future__ import annotations

import json
from pathlib import Path

FORMAT = "galclip-encoder"
FORMAT_VERSION = 1


def write_safetensors(path: str | Path, module, metadata: dict[str, str]) -> Path:
    """Write a module's weights (on the CPU) and string metadata to one safetensors file,
    atomically (temporary name, then rename). Used for encoders and CLIP models alike."""
    from safetensors.torch import save_file

    from galclip.storage import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}
    with atomic_write(path, size=sum(v.nelement() * v.element_size() for v in state.values())) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def save_encoder(encoder, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write ``encoder`` (weights + config + version) to ``path`` atomically."""
    from galclip import __version__

    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "galclip_version": __version__,
            "config": json.dumps(encoder.config), **(extra or {})}
    return write_safetensors(path, encoder, meta)


def read_metadata(path: str | Path, what: str = "encoder checkpoint") -> dict[str, str]:
    """The metadata dict of a safetensors file (no weights are read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path}: not a safetensors file ({e})") from e


def load_encoder(path: str | Path, map_location: str = "cpu"):
    """Rebuild an encoder from a file written by :func:`save_encoder` (eval mode), or load a
    published AstroCLIP backbone (``specformer.ckpt``, AstroDINO teacher weights)."""
    from safetensors.torch import load_file

    from galclip.models import astroclip_checkpoint as A
    from galclip.models.registry import build_encoder

    path = Path(path)
    if path.is_file() and A.file_kind(path) == "torch":
        return A.load_astroclip_encoder(path).to(map_location)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{path}: metadata field 'format' is {meta.get('format')!r}, "
                         f"expected {FORMAT!r} with a 'config' entry")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: encoder format version {meta['format_version']} is newer than "
                         f"this galclip reads ({FORMAT_VERSION})")
    encoder = build_encoder(json.loads(meta["config"]), where=f"{path}: config")
    encoder.load_state_dict(load_file(str(path), device=map_location))
    return encoder.eval()
