"""The published AstroCLIP model: parity with the official code, key inventory, bad files.

The fixtures in ``tests/fixtures/astroclip/`` were made by ``generate.py`` there with the
official AstroCLIP and DINOv2 code (tiny sizes, random weights, Lightning's own checkpoint).
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import galclip
from galclip.data.astroclip import astroclip_image_to_chw
from galclip.models import astroclip_checkpoint as A
from galclip.models.astroclip import AstroCLIP, build_astroclip, specformer_tokens

FIX = Path(__file__).resolve().parent / "fixtures" / "astroclip"
CKPT, SPEC, DINO = FIX / "astroclip_tiny.ckpt", FIX / "specformer_tiny.ckpt", FIX / "astrodino_tiny.pth"


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    return dict(np.load(FIX / "parity.npz"))


@pytest.fixture(scope="module")
def model() -> AstroCLIP:
    return galclip.load_model(CKPT)


def embed(model, official, images=None, spectra=None):
    images = astroclip_image_to_chw(official["images"]) if images is None else images
    spectra = official["spectra"][..., 0] if spectra is None else spectra
    with torch.inference_mode():
        return (model.encode_image(images).numpy(),
                model.encode_spectrum(spectra, np.ones_like(spectra)).numpy())


def assert_parity(ours: np.ndarray, theirs: np.ndarray) -> None:
    cos = (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    assert cos.min() >= 0.99999 and np.abs(ours - theirs).max() <= 1e-5, (cos, np.abs(ours - theirs).max())


def test_embeddings_equal_the_official_ones(model, official):
    assert official["spectra"][1, :, 0].std(ddof=1) < 0.2  # one spectrum takes the std clip
    img, spec = embed(model, official)
    assert_parity(img, official["image_embedding"])
    assert_parity(spec, official["spectrum_embedding"])
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-6)


@pytest.mark.slow
def test_transposed_or_flipped_inputs_differ(model, official):
    chw = astroclip_image_to_chw(official["images"])
    for wrong in (np.swapaxes(chw, -1, -2), chw[..., ::-1], chw[:, ::-1]):  # transpose, flip, bands
        img, _ = embed(model, official, images=np.ascontiguousarray(wrong))
        assert np.abs(img - official["image_embedding"]).max() > 1e-3
    _, spec = embed(model, official, spectra=np.ascontiguousarray(official["spectra"][:, ::-1, 0]))
    assert np.abs(spec - official["spectrum_embedding"]).max() > 1e-3


def test_batch_of_one_and_chunked_depth(model, official):
    cfg = model.config["image_encoder"]
    assert (cfg["depth"], cfg["block_chunks"]) == (8, 4)  # two blocks per chunk
    assert "image_encoder.backbone.blocks.1.3.ls1.gamma" in model.state_dict()
    chw = astroclip_image_to_chw(official["images"])
    img, spec = embed(model, official, images=chw[1:2], spectra=official["spectra"][1:2, :, 0])
    assert img.shape == spec.shape == (1, 32)
    assert_parity(img, official["image_embedding"][1:2])
    assert_parity(spec, official["spectrum_embedding"][1:2])


def test_specformer_tokens_layout():
    flux = torch.linspace(0, 1, 7781).repeat(2, 1)
    x = specformer_tokens(flux)
    assert x.shape == (2, 778, 22)
    assert torch.all(x[:, 1:, :2] == 0)  # the 2-zero left pad
    std = flux.std(1, keepdim=True)
    assert torch.allclose(x[:, 0, 1], (std[:, 0] - 2) / 8)
    assert torch.allclose(x[:, 2, 2:], ((flux - flux.mean(1, keepdim=True)) / std)[:, 10:30])


def test_published_backbones_load_as_encoders(official):
    from galclip.models import load_encoder

    spec = load_encoder(SPEC)
    assert (spec.modality, spec.config["arch"]) == ("spectrum", "astroclip")
    with torch.inference_mode():
        tokens = spec(torch.from_numpy(official["spectra"][..., 0]))["tokens"].numpy()
    assert np.abs(tokens - official["spectrum_tokens"]).max() <= 1e-5
    dino = A.load_astroclip_encoder(DINO, num_heads=2)  # a teacher file holds no head count
    with torch.inference_mode():
        tokens = dino(torch.from_numpy(astroclip_image_to_chw(official["images"])))["tokens"].numpy()
    assert np.abs(tokens - official["image_tokens"]).max() <= 1e-5
    assert load_encoder(DINO).config["num_heads"] == 1  # default width / 64, at least one


def test_aligned_model_from_published_backbones_round_trips(tmp_path):
    from galclip.models.clip import GalaxyCLIP, save_model

    clip = GalaxyCLIP(A.load_astroclip_encoder(DINO, num_heads=2), A.load_astroclip_encoder(SPEC),
                      embed_dim=8)
    path = save_model(clip, tmp_path / "aligned.safetensors")
    again = galclip.load_model(path)
    images, flux = torch.rand(1, 3, 152, 152) * 0.1, torch.rand(1, 7781)
    with torch.inference_mode():
        assert torch.allclose(clip.eval().encode_image(images), again.encode_image(images), atol=1e-6)
        assert torch.allclose(clip.encode_spectrum(flux, flux), again.encode_spectrum(flux, flux),
                              atol=1e-6)


def test_full_size_matches_the_released_key_inventory():
    inventory = json.loads((FIX / "released_keys.json").read_text())
    with torch.device("meta"):
        state = build_astroclip({}).state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == inventory["keys"]
    assert len(state) == inventory["n_tensors"] == 446
    n = sum(math.prod(v.shape) for v in state.values())
    assert n == inventory["n_parameters"] and round(n / 1e6, 1) == 370.8


# ----------------------------------------------------------------------------- bad files
def test_truncated_file(tmp_path):
    bad = tmp_path / "astroclip.ckpt"
    bad.write_bytes(CKPT.read_bytes()[: CKPT.stat().st_size // 2])
    with pytest.raises(A.CheckpointError, match=r"astroclip\.ckpt: not a readable .*truncated"):
        galclip.load_model(bad)


def test_not_lightning_and_wrong_kinds(tmp_path):
    from galclip.models import create_encoder, load_encoder, save_encoder

    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(A.CheckpointError, match="plain.ckpt: not a Lightning checkpoint"):
        galclip.load_model(plain)
    with pytest.raises(A.CheckpointError, match="SpecFormer checkpoint .*load_encoder"):
        galclip.load_model(SPEC)
    with pytest.raises(A.CheckpointError, match="the AstroCLIP CLIP model.*galclip.load_model"):
        load_encoder(CKPT)
    ours = save_encoder(create_encoder("image-nano", depth=1), tmp_path / "enc.safetensors")
    with pytest.raises(A.CheckpointError, match="galclip safetensors checkpoint, not AstroCLIP"):
        A.load_astroclip_model(ours)
    with pytest.raises(A.CheckpointError, match="galclip safetensors file, not an AstroCLIP"):
        A.load_astroclip_encoder(ours)


class RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unexpected_global_is_refused_before_anything_runs(tmp_path):
    marker, bad = tmp_path / "ran", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": RunsACommand(marker)}}, bad)
    with pytest.raises(A.CheckpointError, match=r"global '(posix|os)\.system'.*refused"):
        galclip.load_model(bad)
    legacy = tmp_path / "legacy.ckpt"  # torch's old (non-zip) format goes through the same check
    with open(legacy, "wb") as f:
        pickle.dump(RunsACommand(marker), f, protocol=2)
    with pytest.raises(A.CheckpointError, match="system"):
        galclip.load_model(legacy)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated; the file still exists
def test_torchscript_archive_is_not_handed_to_torch_jit(tmp_path):
    scripted = tmp_path / "scripted.ckpt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    with pytest.raises(A.CheckpointError, match="TorchScript archive"):
        galclip.load_model(scripted)


@pytest.mark.parametrize("change", ["missing", "misshaped"])
def test_missing_or_misshaped_tensor(monkeypatch, change):
    real = A.read_torch_file(CKPT)
    state = dict(real["state_dict"])
    key = "spectrum_encoder.mlp.decoder.weight"
    if change == "missing":
        del state[key]
    else:
        state[key] = torch.zeros(3, 3)
    monkeypatch.setattr(A, "read_torch_file", lambda path: {**real, "state_dict": state})
    with pytest.raises(A.CheckpointError, match=f"do not match: .*{key}"):
        galclip.load_model(CKPT)


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    from galclip.cli import main

    bad = tmp_path / "astroclip.ckpt"
    shutil.copy(CKPT, bad)
    bad.write_bytes(bad.read_bytes()[:1000])
    assert main(["embed", "--model", str(bad), "--data", str(tmp_path), "--out",
                 str(tmp_path / "cat")]) == 2
    err = capsys.readouterr().err.strip()
    assert "astroclip.ckpt: not a readable PyTorch checkpoint" in err and "Traceback" not in err
