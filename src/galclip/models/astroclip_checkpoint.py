"""Read AstroCLIP's released files without the astroclip or dinov2 packages and without running
pickled code: ``astroclip.ckpt`` (Lightning), ``specformer.ckpt`` (Lightning) and AstroDINO
teacher weights (a DINOv2 training checkpoint or a plain state dict).

Lightning pickles the AstroCLIP encoder modules themselves into ``hyper_parameters``, so the
file is a general pickle. It is read with a restricted unpickler (the "restricting globals"
recipe of the Python ``pickle`` documentation): every global the pickle names must be on
:data:`ALLOWED`; the AstroCLIP, DINOv2, torchvision and ``torch.nn`` module classes are replaced
by inert records (:class:`Pickled`: their state is kept, nothing of theirs runs); tensors are
rebuilt by torch's own rebuild functions. Any other global stops the load before anything is
called, with an error naming it. The weights come from ``state_dict``; the pickled modules
only supply what the tensors cannot say (attention heads, SpecFormer's hyper-parameters).
"""
from __future__ import annotations

import collections
import pickle
import types
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from galclip.models.astroclip import (
    AstroCLIP,
    AstroDinoConfig,
    AstroDinoEncoder,
    SpecFormerConfig,
    SpecFormerEncoder,
    build_astroclip,
)


class CheckpointError(ValueError):
    """A file that is not the AstroCLIP checkpoint it should be; the message names the file."""


class Pickled:
    """An inert stand-in for a pickled object of an admitted class: it keeps its state only."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.state = args, {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"_state": state}

    def child(self, name: str) -> Pickled:
        """The sub-module ``name`` (dotted) of a pickled ``nn.Module``."""
        node = self
        for part in name.split("."):
            node = node.state.get("_modules", {}).get(part)
            if not isinstance(node, Pickled):
                raise KeyError(name)
        return node


class AttributeDict(dict):
    """Lightning's ``AttributeDict`` (a dict), without Lightning."""


_MODULE_CLASSES = [
    "astroclip.models.astroclip.ImageHead", "astroclip.models.astroclip.SpectrumHead",
    "astroclip.models.specformer.SpecFormer", "astroclip.modules.CrossAttentionHead",
    "astroclip.modules.LayerNorm", "astroclip.modules.MLP", "astroclip.modules.SelfAttention",
    "astroclip.modules.TransformerBlock",
    # the datamodule's collate function, which LightningCLI may save with the run
    "astroclip.data.datamodule.AstroClipCollator", "astroclip.astrodino.data.augmentations.ToRGB",
    "torchvision.transforms.transforms.CenterCrop",
    "dinov2.models.vision_transformer.DinoVisionTransformer",
    "dinov2.models.vision_transformer.BlockChunk", "dinov2.layers.attention.Attention",
    "dinov2.layers.attention.MemEffAttention", "dinov2.layers.block.Block",
    "dinov2.layers.block.NestedTensorBlock", "dinov2.layers.layer_scale.LayerScale",
    "dinov2.layers.mlp.Mlp", "dinov2.layers.patch_embed.PatchEmbed",
    "dinov2.layers.drop_path.DropPath",
] + [f"torch.nn.modules.{m}" for m in (
    "activation.GELU", "activation.MultiheadAttention", "container.ModuleList",
    "container.Sequential", "conv.Conv2d", "dropout.Dropout", "linear.Identity", "linear.Linear",
    "linear.NonDynamicallyQuantizableLinear", "normalization.LayerNorm", "sparse.Embedding")]


def _stub(name: str) -> type:
    return type(name.rsplit(".", 1)[1], (Pickled,), {"qualname": name})


def _allowed() -> dict[str, Any]:
    """Global name -> the object the unpickler returns for it."""
    allowed: dict[str, Any] = {name: _stub(name) for name in _MODULE_CLASSES}
    for name in ("lightning.fabric.utilities.data", "lightning.pytorch.utilities.parsing",
                 "pytorch_lightning.utilities.parsing"):
        allowed[f"{name}.AttributeDict"] = AttributeDict
    for fn in ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"):
        allowed[f"torch._utils.{fn}"] = getattr(torch._utils, fn)
    for dtype in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "bool", "uint8"):
        allowed[f"torch.{dtype}"] = getattr(torch, dtype)
    allowed.update({"torch.device": torch.device, "torch.Size": torch.Size,
                    "collections.OrderedDict": collections.OrderedDict,
                    "builtins.set": set, "builtins.frozenset": frozenset,
                    "builtins.slice": slice, "builtins.complex": complex})
    return allowed


ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of :data:`ALLOWED`; anything else is an UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        full = f"{'builtins' if module == '__builtin__' else module}.{name}"  # protocol 2 names
        if full not in ALLOWED:
            raise RefusedGlobal(full)
        return ALLOWED[full]


class RefusedGlobal(Exception):
    """A pickle named a global outside :data:`ALLOWED`."""


def _pickle_module() -> types.ModuleType:
    mod = types.ModuleType("galclip_restricted_pickle")
    mod.Unpickler, mod.__name__ = RestrictedUnpickler, "pickle"
    mod.load = lambda f, **kwargs: RestrictedUnpickler(f, **kwargs).load()
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def read_torch_file(path: str | Path) -> Any:
    """Unpickle a torch checkpoint with :class:`RestrictedUnpickler` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    zipped = zipfile.is_zipfile(path)
    if zipped and _is_torchscript(path):  # torch.load would hand it to torch.jit.load
        raise CheckpointError(f"{path}: a TorchScript archive, not an AstroCLIP checkpoint")
    try:
        return torch.load(path, map_location="cpu", pickle_module=_pickle_module(),
                          weights_only=False, mmap=zipped)
    except RefusedGlobal as e:
        raise CheckpointError(f"{path}: the pickle references the global {e.args[0]!r}, which "
                              "an AstroCLIP checkpoint does not hold; refused (nothing was run)") from None
    except Exception as e:  # noqa: BLE001 - torch's reader raises many types for a broken file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or "
                              f"corrupt?): {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


# ----------------------------------------------------------------------------- what a file is
def file_kind(path: str | Path) -> str:
    """``"safetensors"`` (galclip's files) or ``"torch"`` (a zip or legacy torch pickle)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # a little-endian header length, then JSON
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # zip, or a pickle's PROTO opcode
        return "torch"
    return "unknown"


def _checkpoint_dict(path: Path, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def _lightning(path: Path, obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    ckpt = _checkpoint_dict(path, obj)
    if not isinstance(ckpt.get("state_dict"), dict) or not isinstance(ckpt.get("hyper_parameters"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no 'state_dict' and "
                              f"'hyper_parameters'; keys: {sorted(ckpt)[:8]})")
    return ckpt["state_dict"], ckpt["hyper_parameters"]


def _is_clip(state: dict) -> bool:
    return any(k.startswith("image_encoder.backbone.") for k in state)


# ----------------------------------------------------------------------------- loading
def _pickled(path: Path, hp: dict, key: str, child: str, kind: str) -> Pickled:
    enc = hp.get(key)
    try:
        return enc.child(child)
    except (AttributeError, KeyError):
        raise CheckpointError(f"{path}: hyper_parameters[{key!r}] holds no pickled {kind} "
                              f"module at {child!r}") from None


def _num_heads(path: Path, hp: dict, key: str) -> int:
    mha = _pickled(path, hp, key, "cross_attention.multihead_attn", "MultiheadAttention")
    return int(mha.state["num_heads"])


def _dino_config(state: dict, prefix: str, num_heads: int, eps: float = 1e-6) -> AstroDinoConfig:
    """The ViT's sizes from its tensors (widths, depth, chunks) plus its head count."""
    w = state[f"{prefix}patch_embed.proj.weight"]  # (D, 3, p, p)
    d, p = int(w.shape[0]), int(w.shape[-1])
    n_patches = int(state[f"{prefix}pos_embed"].shape[1]) - 1
    parts = [k[len(prefix):].split(".") for k in state
             if k.startswith(f"{prefix}blocks.") and k.endswith(".norm1.weight")]
    chunked = all(len(p) == 5 for p in parts)  # blocks.{chunk}.{index}.norm1.weight
    hidden = next(v.shape[0] for k, v in state.items()
                  if k.startswith(f"{prefix}blocks.") and k.endswith("mlp.fc1.weight"))
    return AstroDinoConfig(img_size=int(round(n_patches ** 0.5)) * p, patch_size=p, embed_dim=d,
                           depth=len(parts), num_heads=num_heads, mlp_ratio=hidden / d,
                           block_chunks=len({p[1] for p in parts}) if chunked else 0, norm_eps=eps)


def _specformer_config(path: Path, hparams: Any) -> SpecFormerConfig:
    fields = set(SpecFormerConfig.__dataclass_fields__) - {"modality", "arch"}
    if not isinstance(hparams, dict) or not {"embed_dim", "num_layers", "num_heads"} <= set(hparams):
        raise CheckpointError(f"{path}: no SpecFormer hyper-parameters (embed_dim, num_layers, "
                              "num_heads) in the checkpoint")
    return SpecFormerConfig(**{k: v for k, v in hparams.items() if k in fields})


def _load_state(path: Path, module: torch.nn.Module, state: dict[str, Any], what: str) -> None:
    """Strict load: every key present, none extra, every shape equal; errors name the key."""
    want = module.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    bad = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in want.items()
           if k in state and (not torch.is_tensor(state[k]) or state[k].shape != v.shape)]
    if missing or extra or bad:
        raise CheckpointError(f"{path}: the {what} weights do not match: missing {missing[:4]}, "
                              f"unexpected {extra[:4]}, mis-shaped {bad[:4]}")
    module.load_state_dict(state, strict=True)


def _wrong_kind(path: Path, found: str, use: str) -> CheckpointError:
    return CheckpointError(f"{path}: this is {found}; load it with {use}")


def _clip_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and hyper-parameters of an ``astroclip.ckpt``; clear errors otherwise."""
    if file_kind(path) == "safetensors":
        raise _wrong_kind(path, "a galclip safetensors checkpoint, not AstroCLIP's Lightning "
                                "checkpoint", "galclip.load_model (as a galclip model)")
    state, hp = _lightning(path, read_torch_file(path))
    if not _is_clip(state):
        if "data_embed.weight" in state:
            raise _wrong_kind(path, "a SpecFormer checkpoint (an encoder)", "galclip.models.load_encoder")
        raise CheckpointError(f"{path}: a Lightning checkpoint, but not AstroCLIP's (no "
                              "'image_encoder.backbone.*' weights)")
    return state, hp


def _model_config(path: Path, state: dict, hp: dict) -> dict[str, Any]:
    """``AstroCLIP.config`` of a checkpoint: sizes from the tensors, head counts and SpecFormer's
    hyper-parameters from the pickled modules."""
    vit = _pickled(path, hp, "image_encoder", "backbone", "DINOv2 ViT")
    spec = _pickled(path, hp, "spectrum_encoder", "backbone", "SpecFormer")
    try:
        eps = float(vit.child("norm").state.get("eps", 1e-6))
        image = _dino_config(state, "image_encoder.backbone.", int(vit.state["num_heads"]), eps)
        embed_dim = int(state["image_encoder.cross_attention.query"].shape[-1])
    except (KeyError, StopIteration, ValueError) as e:
        raise CheckpointError(f"{path}: the image tower's weights are incomplete (no {e})") from None
    return {"family": "astroclip", "embed_dim": embed_dim,
            "image_heads": _num_heads(path, hp, "image_encoder"),
            "spectrum_heads": _num_heads(path, hp, "spectrum_encoder"),
            "logit_scale": float(hp.get("logit_scale", 15.5)),
            "image_encoder": asdict(image),
            "spectrum_encoder": asdict(_specformer_config(path, spec.state.get("_hparams")))}


def read_astroclip_metadata(path: str | Path) -> dict[str, Any]:
    """What ``read_checkpoint_metadata`` gives for a galclip file: ``format``, ``config``, ``extra``."""
    path = Path(path)
    state, hp = _clip_checkpoint(path)
    frozen = {m for m in ("image", "spectrum")
              if getattr(hp.get(f"{m}_encoder"), "state", {}).get("freeze_backbone")}
    optim = {"freeze_backbones": bool(frozen), "finetune": sorted({"image", "spectrum"} - frozen)
             if frozen else []}  # as galclip's alignment config would say it
    return {"format": "astroclip-lightning", "family": "astroclip",
            "config": _model_config(path, state, hp), "extra": {"run_config": {"optim": optim}}}


def load_astroclip_model(path: str | Path, device: str | torch.device = "cpu") -> AstroCLIP:
    """The released AstroCLIP model (``astroclip.ckpt``) in eval mode."""
    path = Path(path)
    state, hp = _clip_checkpoint(path)
    model = build_astroclip(_model_config(path, state, hp))
    _load_state(path, model, state, "AstroCLIP")
    return model.to(device).eval()


def _teacher_state(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    """DINOv2's ``load_pretrained_weights(..., "teacher")``: take ``teacher`` if present, strip
    ``module.`` and ``backbone.``, keep the backbone's tensors (heads are dropped)."""
    obj = _checkpoint_dict(path, obj)
    state = obj.get("teacher", obj)
    state = {k.replace("module.", "").replace("backbone.", ""): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(("dino_head.", "ibot_head."))}


def load_astroclip_encoder(path: str | Path, num_heads: int | None = None):
    """A published backbone as a galclip encoder (eval mode): ``specformer.ckpt`` (Lightning) or
    AstroDINO teacher weights. The teacher file holds no head count: ``num_heads`` defaults to
    width / 64 (every DINOv2 ViT: ViT-L 1024 / 16)."""
    path = Path(path)
    if file_kind(path) == "safetensors":
        raise _wrong_kind(path, "a galclip safetensors file, not an AstroCLIP one",
                          "galclip.models.load_encoder")
    obj = read_torch_file(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        state, hp = _lightning(path, obj)
        if _is_clip(state):
            raise _wrong_kind(path, "the AstroCLIP CLIP model, not an encoder", "galclip.load_model")
        if "data_embed.weight" not in state:
            raise CheckpointError(f"{path}: a Lightning checkpoint, but not a SpecFormer")
        encoder = SpecFormerEncoder(_specformer_config(path, hp))
        _load_state(path, encoder, state, "SpecFormer")
        return encoder.eval()
    state = _teacher_state(path, obj)
    if "patch_embed.proj.weight" not in state:
        raise CheckpointError(f"{path}: neither a SpecFormer nor DINOv2 (AstroDINO) weights")
    d = int(state["patch_embed.proj.weight"].shape[0])
    encoder = AstroDinoEncoder(_dino_config(state, "", num_heads or max(1, d // 64)))
    _load_state(path, encoder, state, "AstroDINO")
    return encoder.eval()
