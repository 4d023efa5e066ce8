"""Encoders: registry, shapes for every preset, gradients, bad-pixel masking, config, checkpoints."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from galclip import conventions as C
from galclip.models import (
    build_encoder,
    create_encoder,
    encoder_config,
    list_encoders,
    load_encoder,
    save_encoder,
)

SMALL = ("image-nano", "spectrum-nano")
#: the transformer presets (the conv family has its own tests in test_conv_encoders.py)
TRANSFORMERS = [n for n in list_encoders() if encoder_config(n).get("arch") != "conv"]


def _inputs(modality: str, b: int = 2, seed: int = 0, size: int = C.IMAGE_SIZE, n_pix: int = C.N_WAVE):
    g = torch.Generator().manual_seed(seed)
    if modality == "image":
        return (0.02 * torch.randn(b, 3, size, size, generator=g),)
    flux = 1.0 + torch.randn(b, n_pix, generator=g)
    ivar = torch.rand(b, n_pix, generator=g) + 0.5
    return flux, ivar


def _n_tokens(enc) -> int:
    cfg = enc.cfg
    if enc.modality == "image":
        return 1 + (cfg.img_size // cfg.patch_size) ** 2
    return 1 + cfg.n_slices


def test_registry_lists_both_modalities_and_the_published_sizes():
    names = list_encoders()
    assert set(list_encoders("image")) | set(list_encoders("spectrum")) == set(names)
    assert {"image-large", "spectrum-base", *SMALL} <= set(names)
    large = encoder_config("image-large")
    assert (large["embed_dim"], large["depth"], large["num_heads"]) == (1024, 24, 16)
    base = encoder_config("spectrum-base")
    assert (base["embed_dim"], base["depth"], base["num_heads"]) == (768, 6, 6)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_every_preset_has_the_contract_shapes(name):
    """Large presets run on the meta device (shapes only); the small ones really run."""
    device = "cpu" if name in SMALL else "meta"
    with torch.device(device):
        enc = create_encoder(name).eval()
        out = enc(*_inputs(enc.modality))
    D = enc.embed_dim
    assert enc.config["modality"] == enc.modality
    assert out["tokens"].shape == (2, _n_tokens(enc), D)
    assert out["pooled"].shape == (2, D)
    if enc.modality == "spectrum":
        assert out["padding_mask"].shape == (2, _n_tokens(enc)) and out["padding_mask"].dtype == torch.bool
    if device == "cpu":
        assert torch.isfinite(out["tokens"]).all() and torch.isfinite(out["pooled"]).all()


def test_published_parameter_counts():
    with torch.device("meta"):
        n_spec = sum(p.numel() for p in create_encoder("spectrum-base").parameters())
        n_img = sum(p.numel() for p in create_encoder("image-large").parameters())
    assert 42e6 < n_spec < 44e6       # AstroCLIP SpecFormer: ~43 M
    assert 300e6 < n_img < 306e6      # ViT-L/12: ~303 M


@pytest.mark.parametrize("name", SMALL)
def test_gradients_reach_every_trainable_parameter(name):
    enc = create_encoder(name).train()
    out = enc(*_inputs(enc.modality))
    (out["tokens"].pow(2).mean() + out["pooled"].pow(2).mean()).backward()
    missing = [n for n, p in enc.named_parameters() if p.requires_grad and
               (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing


@pytest.mark.slow
@pytest.mark.parametrize("log_bins", [0, 2048])
def test_bad_spectrum_pixels_never_influence_the_output(log_bins):
    enc = create_encoder("spectrum-nano", log_bins=log_bins).eval()
    flux, ivar = _inputs("spectrum")
    ivar[0, 1000:1500] = 0          # a masked stretch
    ivar[1, ::7] = 0                # scattered bad pixels
    ivar[1, -30:] = 0               # the red end (pixels 7751 ...), incl. the padded last slice
    ref = enc(flux, ivar)
    bad = ivar == 0
    for junk in (1e6, -3.0, float("nan"), float("inf")):
        out = enc(torch.where(bad, torch.full_like(flux, junk), flux), ivar)
        for key in ("tokens", "pooled", "padding_mask"):
            assert torch.equal(out[key], ref[key]), (junk, key)
    # fully bad slices are padding tokens; the statistics token never is
    pm = ref["padding_mask"]
    assert not pm[:, 0].any()
    if log_bins == 0:
        assert pm[0, 1:].sum() == 49      # slices lying wholly in [1000, 1500): i = 100 ... 148
        assert not pm[1, 1:-2].any() and pm[1, -2:].all()  # slices 776, 777 start at 7760, 7770
    else:
        # log-λ bins wholly inside the masked stretch, then slices wholly made of such bins
        index = enc.log_bin_index.numpy()
        bad_bin = np.ones(log_bins, bool)
        np.logical_and.at(bad_bin, index, bad[0].numpy())
        cfg = enc.cfg
        padded = bad_bin[np.minimum(np.arange(cfg.n_slices)[:, None] * cfg.slice_stride
                                    + np.arange(cfg.slice_size), log_bins - 1)].all(1)
        assert 10 < padded.sum() < 40 and np.array_equal(pm[0, 1:].numpy(), padded)


def test_log_rebin_weights_by_ivar_and_keeps_a_line_shape_at_every_redshift():
    from galclip.models.spectrum_encoder import log_bin_index, log_rebin

    n_bins = 2048
    index = torch.tensor(log_bin_index(C.N_WAVE, n_bins))
    assert index.min() == 0 and index.max() == n_bins - 1 and (index.diff() >= 0).all()
    wave = torch.tensor(C.WAVE_MIN + C.WAVE_STEP * np.arange(C.N_WAVE))
    # inverse-variance weighting: a bin's mean lies closest to its most certain pixel; ivar adds up
    g = torch.Generator().manual_seed(1)
    flux = torch.randn(1, C.N_WAVE, generator=g, dtype=torch.float64)
    ivar = torch.rand(1, C.N_WAVE, generator=g, dtype=torch.float64) + 0.1
    valid = torch.ones_like(ivar, dtype=torch.bool)
    f, w = log_rebin(flux, ivar, valid, index, n_bins)
    expect = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, flux[0] * ivar[0])
    assert torch.allclose(f[0] * w[0], expect) and torch.allclose(w.sum(), ivar.sum())
    # the same rest-frame Gaussian line observed at z = 0.05 and z = 0.45 spans the same number
    # of log bins (its width in Å grows by 1.45 / 1.05), centred where log(1 + z) puts it
    centres = []
    for z in (0.05, 0.45):
        line = torch.exp(-0.5 * ((wave - 4861.3 * (1 + z)) / (2.0 * (1 + z))) ** 2)[None]
        f, _ = log_rebin(line, torch.ones_like(line), valid, index, n_bins)
        mass = f[0] / f[0].sum()
        centre = (mass * torch.arange(n_bins)).sum()
        width = ((mass * (torch.arange(n_bins) - centre) ** 2).sum()).sqrt()
        centres.append((centre.item(), width.item()))
    (c1, w1), (c2, w2) = centres
    step = np.log((C.WAVE_MIN + C.WAVE_STEP * (C.N_WAVE - 0.5)) / (C.WAVE_MIN - C.WAVE_STEP / 2)) / n_bins
    assert abs((c2 - c1) - np.log(1.45 / 1.05) / step) < 0.5
    assert abs(w2 - w1) < 0.15 * w1
    with pytest.raises(ValueError, match="log_bins=9000"):
        create_encoder("spectrum-nano", log_bins=9000)


def test_image_centre_crop_happens_inside_the_model():
    enc = create_encoder("image-nano").eval()
    (x,) = _inputs("image")
    with torch.no_grad():
        full = enc(x)["pooled"]
        cropped = enc(x[..., 4:148, 4:148])["pooled"]
    assert torch.equal(full, cropped)


def test_arcsinh_normalization_is_linear_at_noise_level_and_compressive_for_cores():
    enc = create_encoder("image-nano")
    s = enc.band_scale.view(1, 3, 1, 1)
    faint, bright = enc.normalize(1e-3 * s.expand(1, 3, 8, 8)), enc.normalize(1e3 * s.expand(1, 3, 8, 8))
    d = enc.cfg.arcsinh_divisor
    assert torch.allclose(faint, torch.full_like(faint, 1e-3 / d), rtol=1e-4)
    assert torch.allclose(bright, torch.full_like(bright, float(np.arcsinh(1e3)) / d), rtol=1e-5)


# ---- every config field is read: changing it changes the parameters' shapes or the outputs
PERTURB = {
    "image": {"bands": ["g", "r"], "img_size": 120, "patch_size": 8, "embed_dim": 64, "depth": 3,
              "num_heads": 2, "mlp_ratio": 2.0, "drop_path_rate": 0.5, "band_scale": [0.1, 0.1, 0.1],
              "arcsinh_divisor": 1.0},
    "spectrum": {"n_pixels": 4000, "slice_size": 30, "slice_stride": 20, "embed_dim": 32, "depth": 3,
                 "num_heads": 2, "mlp_ratio": 2.0, "dropout": 0.5, "log_bins": 1024},
}


def _shapes(enc) -> dict:
    return {k: tuple(v.shape) for k, v in enc.state_dict().items()}


@pytest.mark.parametrize("modality, field", [(m, f) for m, d in PERTURB.items() for f in d])
def test_every_config_field_is_used(modality, field):
    base = create_encoder(f"{modality}-nano", depth=2)  # timm: block i drops with rate i/(depth-1)
    cfg = {**base.config, field: PERTURB[modality][field]}
    if field == "bands":
        cfg["band_scale"] = cfg["band_scale"][:2]
    other = build_encoder(cfg)
    if _shapes(other) != _shapes(base):
        return
    other.load_state_dict(base.state_dict())
    args = _inputs(modality, n_pix=cfg.get("n_pixels", C.N_WAVE))
    if field == "n_pixels":  # with log_bins the weights keep their shapes; the input length is checked
        with pytest.raises(ValueError, match=f"shape \\(B, {C.N_WAVE}\\)"):
            base(*args)
        assert torch.isfinite(other(*args)["pooled"]).all()
        return
    outs = []
    for enc in (base, other):
        torch.manual_seed(0)
        outs.append(enc.train()(*args)["tokens"])
    assert outs[0].shape != outs[1].shape or not torch.allclose(outs[0], outs[1])


def test_config_fields_match_the_dataclass_and_modality_is_checked():
    for name in SMALL:
        enc = create_encoder(name)
        fields = set(enc.config) - {"modality"}
        assert fields == set(PERTURB[enc.modality])
    with pytest.raises(ValueError, match="unknown field"):
        create_encoder("image-nano", depht=3)
    with pytest.raises(ValueError, match="unknown encoder 'vit-huge'"):
        create_encoder("vit-huge")
    with pytest.raises(ValueError, match="band_scale"):
        create_encoder("image-nano", bands=["g", "r"])


@pytest.mark.parametrize("name", SMALL)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    enc = create_encoder(name, **({"depth": 1} if name.startswith("image") else {})).eval()
    path = save_encoder(enc, tmp_path / "enc.safetensors")
    again = load_encoder(path)
    assert again.config == enc.config and not again.training
    args = _inputs(enc.modality, seed=3)
    with torch.no_grad():
        a, b = enc(*args), again(*args)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in tmp_path.iterdir()] == ["enc.safetensors"]  # atomic: no temp file left


def test_load_encoder_names_the_file_on_bad_input(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_encoder(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_encoder(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="foreign.safetensors.*format"):
        load_encoder(foreign)


def test_checkpoint_does_not_alias_the_live_model(tmp_path):
    enc = create_encoder("spectrum-nano")
    before = copy.deepcopy(enc.state_dict())
    save_encoder(enc, tmp_path / "a.safetensors")
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)
    again = load_encoder(tmp_path / "a.safetensors")
    assert all(torch.equal(before[k], v) for k, v in again.state_dict().items())
