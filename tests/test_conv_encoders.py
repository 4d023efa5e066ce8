"""The convolutional encoder family (CPU recipe): contract, gradients, bad pixels, every field,
checkpoints, aperture photometry, and the new self-supervised objectives."""
from __future__ import annotations

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

CONV = [n for n in list_encoders() if encoder_config(n).get("arch") == "conv"]


def _inputs(modality: str, b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if modality == "image":
        return (0.02 * torch.randn(b, 3, C.IMAGE_SIZE, C.IMAGE_SIZE, generator=g) + 0.05,)
    return 1.0 + torch.randn(b, C.N_WAVE, generator=g), torch.rand(b, C.N_WAVE, generator=g) + 0.5


def test_the_registry_has_a_conv_encoder_per_modality():
    assert {encoder_config(n)["modality"] for n in CONV} == {"image", "spectrum"}
    with pytest.raises(ValueError, match="unknown arch"):
        build_encoder({"modality": "spectrum", "arch": "lstm"})


@pytest.mark.slow
@pytest.mark.parametrize("name", CONV)
def test_shapes_no_nan_and_gradients_reach_every_parameter(name):
    enc = create_encoder(name).train()
    out = enc(*_inputs(enc.modality))
    D = enc.embed_dim
    assert out["pooled"].shape == (4, D) and out["tokens"].shape[0] == 4 and out["tokens"].shape[2] == D
    assert torch.isfinite(out["tokens"]).all()
    assert torch.equal(out["tokens"][:, 0], out["pooled"])
    if "padding_mask" in out:
        assert out["padding_mask"].shape == out["tokens"].shape[:2] and not out["padding_mask"].any()
    (out["tokens"].pow(2).mean() + out["pooled"].pow(2).mean()).backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CONV if encoder_config(n)["modality"] == "spectrum"])
def test_bad_spectrum_pixels_never_influence_the_output(name):
    enc = create_encoder(name).eval()
    flux, ivar = _inputs("spectrum", b=2)
    ivar[0, 1000:1500] = 0
    ivar[1, ::7] = 0
    ivar[1, -300:] = 0
    ref = enc(flux, ivar)
    bad = ivar == 0
    for junk in (1e6, -3.0, float("nan"), float("inf")):
        out = enc(torch.where(bad, torch.full_like(flux, junk), flux), ivar)
        for key in ("tokens", "pooled", "padding_mask"):
            assert torch.equal(out[key], ref[key]), (junk, key)
    # the red end is wholly bad: its final positions are padding for the CLIP head
    assert ref["padding_mask"][1, -1] and not ref["padding_mask"][0, -1]


PERTURB = {
    "image": {"bands": ["g", "r"], "img_size": 96, "layers": [1, 2, 1, 1], "channels": [16, 32, 64, 96],
              "embed_dim": 64, "aperture_radii": [3.0, 6.0], "band_scale": [0.1, 0.1, 0.1],
              "arcsinh_divisor": 1.0},
    "spectrum": {"n_pixels": 4000, "log_bins": 512, "channels": [16, 32, 48], "blocks": 2, "stem_kernel": 3,
                 "kernel": 3, "embed_dim": 64, "dropout": 0.5},
}


@pytest.mark.slow
@pytest.mark.parametrize("modality, field", [(m, f) for m, d in PERTURB.items() for f in d])
def test_every_config_field_is_used(modality, field):
    name = next(n for n in CONV if encoder_config(n)["modality"] == modality)
    base = create_encoder(name)
    assert set(base.config) - {"modality", "arch"} == set(PERTURB[modality])
    cfg = {**base.config, field: PERTURB[modality][field]}
    if field == "bands":
        cfg["band_scale"] = cfg["band_scale"][:2]
    other = build_encoder(cfg)
    shapes = {k: tuple(v.shape) for k, v in other.state_dict().items()}
    if shapes != {k: tuple(v.shape) for k, v in base.state_dict().items()}:
        return
    other.load_state_dict(base.state_dict())
    args = _inputs(modality)
    if field == "n_pixels":
        with pytest.raises(ValueError, match="shape \\(B, 4000\\)"):
            other(*args)
        return
    outs = []
    for enc in (base, other):
        torch.manual_seed(0)
        outs.append(enc.train()(*args)["pooled"])
    assert not torch.allclose(outs[0], outs[1])


@pytest.mark.slow
@pytest.mark.parametrize("name", CONV)
def test_checkpoint_round_trip_gives_identical_outputs(name, tmp_path):
    enc = create_encoder(name)
    enc.train()(*_inputs(enc.modality))  # move the BatchNorm running statistics off their init
    enc.eval()
    again = load_encoder(save_encoder(enc, tmp_path / "enc.safetensors"))
    assert again.config == enc.config
    with torch.no_grad():
        a, b = enc(*_inputs(enc.modality, seed=3)), again(*_inputs(enc.modality, seed=3))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_aperture_photometry_measures_the_flux_inside_each_radius():
    from galclip.models.image_conv import aperture_fluxes

    img = torch.zeros(1, 3, 64, 64)
    img[0, :, 31:33, 31:33] = torch.tensor([1.0, 2.0, 3.0])[:, None, None]   # 4 central pixels
    img[0, 1, 31, 60] = 10.0                                                  # 28.5 px from centre
    f = aperture_fluxes(img, torch.tensor([2.0, 30.0]))
    assert torch.allclose(f[0, :, 0], torch.tensor([4.0, 8.0, 12.0]))
    assert torch.allclose(f[0, :, 1], torch.tensor([4.0, 18.0, 12.0]))


@pytest.mark.slow
def test_image_encoder_sees_total_flux_and_colour():
    """Twice the flux or another colour moves the embedding even though the shape is the same."""
    enc = create_encoder(next(n for n in CONV if encoder_config(n)["modality"] == "image")).eval()
    (x,) = _inputs("image", b=1)
    with torch.no_grad():
        a, b = enc(x)["pooled"], enc(2 * x)["pooled"]
        c = enc(x * torch.tensor([1.0, 1.0, 2.0]).view(1, 3, 1, 1))["pooled"]
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3


# ---------------------------------------------------------------- spectrum views
def test_noise_view_adds_noise_of_the_stated_variance_and_leaves_bad_bins_alone():
    from galclip.augment import noise_view

    g = torch.Generator().manual_seed(0)
    flux = torch.zeros(4000, 256)
    ivar = torch.full((4000, 256), 4.0)
    ivar[:, :10] = 0
    f, w = noise_view(flux, ivar, 1.0, generator=g)
    assert torch.equal(f[:, :10], flux[:, :10]) and (w[:, :10] == 0).all()
    # per spectrum: var = a^2 / ivar with a ~ U(0, 1); the new ivar is ivar / (1 + a^2)
    a2 = ivar[:, 10] / w[:, 10] - 1
    assert 0 <= a2.min() and a2.max() <= 1
    z = f[:, 10:] * ivar[:, 10:].sqrt() / a2.clamp_min(1e-6).sqrt()[:, None]
    keep = a2 > 0.01
    assert abs(z[keep].std().item() - 1) < 0.02


def test_shift_view_is_a_whole_bin_redshift_with_new_bins_marked_bad():
    from galclip.augment import shift_view

    flux = torch.arange(20.0).repeat(2, 1)
    ivar = torch.ones(2, 20)
    f, w = shift_view(flux, ivar, torch.tensor([3, -2]))
    assert torch.equal(f[0, 3:], flux[0, :17]) and (w[0, :3] == 0).all() and (w[0, 3:] == 1).all()
    assert torch.equal(f[1, :18], flux[1, 2:]) and (w[1, 18:] == 0).all()


def test_span_dropout_zeroes_whole_spans():
    from galclip.augment import span_dropout

    torch.manual_seed(0)
    w = span_dropout(torch.ones(200, 300), 2, 25)
    lost = (w == 0).sum(1)
    assert lost.min() >= 25 and lost.max() <= 50


def _steps_lower(module, batch, n=6, lr=2e-3):
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)

    def loss(train):
        torch.manual_seed(7)  # same views each time; BatchNorm on batch statistics throughout
        module.train()
        with torch.set_grad_enabled(train):
            return module.losses_of(batch)

    before = {k: v.item() for k, v in loss(False).items()}
    for _ in range(n):
        out = loss(True)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = {k: v.item() for k, v in loss(False).items()}
    return before, after


@pytest.mark.slow
def test_a_few_steps_lower_the_contrastive_and_equivariance_losses():
    from galclip.train.schema import build_module, train_config

    cfg = train_config("pretrain-spectrum", None, [
        "objective.name=contrastive", "objective.loss.equivariance_weight=1.0",
        "model.channels=[8,16,16]", "model.embed_dim=32", "objective.heads.hidden_dim=32"])
    m = build_module(cfg)
    flux, ivar = _inputs("spectrum", b=16)
    flux = flux + torch.linspace(0, 3, 16)[:, None] * torch.sin(torch.arange(C.N_WAVE) / 30.0)
    with torch.no_grad():
        f, w = m.encoder.rebin(flux, ivar)
    m.losses_of = lambda b: m.objective(m.encoder.forward_rebinned, *b)
    before, after = _steps_lower(m, (f, w))
    for key in ("contrastive", "equivariance"):
        assert after[key] < before[key], (key, before, after)


@pytest.mark.slow
def test_a_few_steps_lower_the_image_simclr_loss_and_its_views_conserve_flux():
    from dataclasses import replace

    from galclip.augment import ImageViews, augment_view
    from galclip.train.schema import build_module, train_config

    cfg = train_config("pretrain-image", None, [
        "objective.name=simclr", "model.channels=[8,16,16,16]", "model.embed_dim=32",
        "objective.heads.hidden_dim=32", "objective.heads.output_dim=16"])
    m = build_module(cfg)
    (x,) = _inputs("image", b=8)
    x = x * torch.linspace(0.5, 3, 8)[:, None, None, None]
    m.losses_of = m.losses
    before, after = _steps_lower(m, x)
    assert after["loss"] < before["loss"]
    # symmetries and jitter move pixels but keep every value (flux is conserved); PSF blur too
    aug = ImageViews(rot90_flip=True, psf_sigma_max=0.0, noise_max=0.0)
    point = torch.zeros(2, 3, 152, 152)
    point[:, :, 70:82, 70:82] = torch.rand(2, 3, 12, 12)
    v = augment_view(point, 64, 7, m.encoder.band_scale, aug)
    assert torch.allclose(v.sum((-2, -1)), point.sum((-2, -1)))
    blurred = augment_view(point, 64, 7, m.encoder.band_scale, replace(aug, psf_sigma_max=1.5))
    assert torch.allclose(blurred.sum((-2, -1)), point.sum((-2, -1)), rtol=1e-4)


def test_contrastive_objective_refuses_a_transformer_encoder():
    from galclip.config import ConfigError
    from galclip.train.schema import build_module, train_config

    cfg = train_config("pretrain-spectrum", None, ["objective.name=contrastive",
                                                     "model.name=spectrum-nano"])
    with pytest.raises(ConfigError, match="conv"):
        build_module(cfg)
    with pytest.raises(ConfigError, match="objective"):
        train_config("pretrain-spectrum", None, ["objective.name=dino"])


def test_bin_width_matches_the_encoder_grid():
    from galclip.models.spectrum_encoder import log_bin_index
    from galclip.train.spectrum_contrastive import bin_width_lnlam

    enc = create_encoder(next(n for n in CONV if encoder_config(n)["modality"] == "spectrum"))
    index = log_bin_index(C.N_WAVE, enc.cfg.log_bins)
    wave = C.wavelength_grid()
    centres = np.array([np.log(wave[index == i]).mean() for i in (100, 600)])
    assert abs((centres[1] - centres[0]) / 500 - bin_width_lnlam(enc)) < 0.02 * bin_width_lnlam(enc)


def test_calibration_view_is_smooth_of_the_stated_rms_and_keeps_each_pixels_snr():
    from galclip.augment import calibration_view

    g = torch.Generator().manual_seed(0)
    flux = torch.ones(2000, 512)
    ivar = torch.full((2000, 512), 4.0)
    ivar[:, :5] = 0
    f, w = calibration_view(flux, ivar, 0.1, generator=g)
    c = f / flux
    rms = (c - 1).pow(2).mean(1).sqrt()
    assert abs(rms.pow(2).mean().sqrt().item() - 0.1) < 0.01      # the stated rms on average
    assert (rms.std() > 0.02).item()                               # each spectrum its own shape
    assert c.diff(dim=1).abs().max().item() < 0.03                  # smooth: no pixel-scale change
    assert torch.allclose(f * w.sqrt(), flux * ivar.sqrt(), atol=1e-5)   # S/N kept, bad stay bad
    assert calibration_view(flux, ivar, 0.0) == (flux, ivar)


def test_contrastive_views_change_the_spectrum_shape_only_when_asked():
    from galclip.train.spectrum_contrastive import SpectrumContrastiveObjective

    base = {"temperature": 0.5, "proj_dim": 8, "proj_hidden": 16, "noise_max": 0.0,
            "n_spans": 0, "span_len": 1}
    flux, ivar = torch.ones(4, 64), torch.ones(4, 64)
    same = SpectrumContrastiveObjective(32, {**base, "calib_rms": 0.0}, 0.01).views(flux, ivar)
    assert torch.equal(same[0], flux)
    tilted = SpectrumContrastiveObjective(32, {**base, "calib_rms": 0.1}, 0.01).views(flux, ivar)
    assert not torch.allclose(tilted[0], flux)
