"""Self-supervised pretraining: augmentations, masking, EMA teacher, losses, config, resume, CLI."""
from __future__ import annotations

import dataclasses
import math

import lightning as L
import pytest
import torch

from galclip import augment as A
from galclip.config import ConfigError
from galclip.models import list_encoders, load_encoder
from galclip.models.checkpoint import read_metadata
from galclip.train.masked_modelling import masked_mse, span_mask
from galclip.train.runner import train
from galclip.train.schema import build_module as _build_module
from galclip.train.schema import list_presets, train_config
from pretrain_toys import BAD, toy_rows, write_toy_dataset

TINY = {
    "image": ["model.depth=1", "objective.heads.hidden_dim=64", "objective.heads.bottleneck_dim=32",
              "objective.heads.output_dim=128", "objective.crops.n_local=1",
              "objective.crops.global_size=72", "objective.crops.local_size=36", "data.batch_size=8"],
    "spectrum": ["model.depth=1", "data.batch_size=8"],
}
RUN = ["trainer.progress_bar=false", "trainer.log_every_n_steps=1", "optim.warmup_steps=1"]
BAND_SCALE = torch.tensor([0.0066, 0.01, 0.025])


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("pre") / "ds")


# ---------------------------------------------------------------- config
def pretrain_config(modality, config=None, overrides=()):
    return train_config(f"pretrain-{modality}", config, overrides)


def build_module(modality, cfg):
    return _build_module(cfg)


def test_presets_resolve_and_overrides_reach_the_encoder():
    presets = list_presets("pretrain-image") + list_presets("pretrain-spectrum")
    assert {"image-cpu", "image-astrodino", "spectrum-cpu", "spectrum-specformer"} <= set(presets)
    for preset in presets:
        modality = preset.split("-")[0]
        cfg = pretrain_config(modality, preset, ["model.embed_dim=48"])
        assert cfg.model.embed_dim == 48 and cfg.model.modality == modality
        assert cfg.model.name in list_encoders(modality) and dataclasses.is_dataclass(cfg.model)
    assert pretrain_config("image", "image-astrodino").model.embed_dim == 1024
    assert pretrain_config("spectrum", "spectrum-specformer").model.embed_dim == 768
    with pytest.raises(ConfigError, match="optim.*unknown key 'lrr'"):
        pretrain_config("image", "image-cpu", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="is a spectrum encoder"):
        pretrain_config("image", None, ["model.name=spectrum-nano"])
    with pytest.raises(ConfigError, match="model: .*embed_dim 32 is not divisible by num_heads 6"):
        pretrain_config("spectrum", "spectrum-specformer", ["model.embed_dim=32"])  # refused at once
    with pytest.raises(ConfigError, match="not a preset"):
        pretrain_config("image", "image-gigantic")


# ---------------------------------------------------------------- augmentations
def test_multi_crop_gives_the_configured_views():
    x = torch.rand(3, 3, 152, 152)
    glob, local = A.multi_crop(x, BAND_SCALE, A.Crops(n_local=3), A.ImageViews(max_shift=4))
    assert [v.shape for v in glob] == [(3, 3, 144, 144)] * 2
    assert [v.shape for v in local] == [(3, 3, 60, 60)] * 3


def test_symmetries_and_shifts_keep_every_pixel_value():
    x = torch.rand(6, 3, 20, 20)
    y = A.random_dihedral(x)
    assert torch.equal(y.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    c = A.random_crops(x, 16, max_offset=2)
    # every crop is a window of its own image within +-2 px of centre
    assert any(torch.equal(c[0], x[0, :, 2 + dy:18 + dy, 2 + dx:18 + dx])
               for dy in range(-2, 3) for dx in range(-2, 3))


def test_psf_blur_conserves_flux_and_widens_a_point_source():
    x = torch.zeros(1, 3, 33, 33)
    x[..., 16, 16] = torch.tensor([1.0, 2.0, 3.0])
    torch.manual_seed(2)  # widths ~ U(0, 2) px per band: a seed at which none is drawn near 0
    y = A.psf_blur(x, sigma_max=2.0)
    assert torch.allclose(y.sum((-2, -1)), x.sum((-2, -1)), rtol=1e-5)   # no colour change
    assert (y[..., 16, 16] < x[..., 16, 16]).all()
    assert torch.equal(A.psf_blur(x, 0.0), x)


def test_noise_is_per_band_in_units_of_the_band_scale():
    x = torch.zeros(4000, 3, 4, 4)
    torch.manual_seed(0)
    y = A.add_noise(x, BAND_SCALE, noise_max=1.0)
    # sigma ~ U(0, 1) * s_b: E[sigma^2] = s_b^2 / 3
    var = y.pow(2).mean((0, 2, 3))
    assert torch.allclose(var, BAND_SCALE ** 2 / 3, rtol=0.1)
    assert torch.equal(A.add_noise(x, BAND_SCALE, 0.0), x)


# ---------------------------------------------------------------- image: DINO + iBOT + KoLeo
def _image_module(extra=()):
    cfg = pretrain_config("image", None, TINY["image"] + ["trainer.max_steps=20", *extra])
    return build_module("image", cfg)


@pytest.mark.slow
def test_ema_teacher_gets_no_gradients_and_follows_the_student():
    torch.manual_seed(0)
    m = _image_module(["objective.ibot.mask_probability=1.0"])
    opt = m.configure_optimizers()["optimizer"]
    teacher = [m.teacher, m.teacher_dino_head, m.teacher_ibot_head]
    m.losses(torch.from_numpy(toy_rows(4)["image"]))["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for t in teacher for p in t.parameters())
    trainable = {n: p for t in m.trainable() for n, p in t.named_parameters()}
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())
    opt.step()
    old = [p.detach().clone() for p in m.teacher.parameters()]
    m.on_train_batch_end(None, None, 0)
    mom = m.momentum(0)
    assert 0.99 <= mom < 1
    for t_old, t_new, s in zip(old, m.teacher.parameters(), m.student.parameters(), strict=True):
        assert torch.allclose(t_new, mom * t_old + (1 - mom) * s, atol=1e-6)
    assert not torch.equal(old[0], next(m.teacher.parameters()))
    m.train()
    assert not m.teacher.training and m.student.training


def test_schedules_warm_up_and_end_where_configured():
    m = _image_module(["objective.loss.warmup_teacher_temp_steps=10"])
    lo, e = m.obj.loss, m.obj.ema
    assert m.teacher_temp(0) == pytest.approx(lo.warmup_teacher_temp)
    assert m.teacher_temp(10) == m.teacher_temp(15) == pytest.approx(lo.teacher_temp)
    assert m.momentum(0) == pytest.approx(e.momentum_start)
    assert m.momentum(20) == pytest.approx(e.momentum_end)


@pytest.mark.slow
def test_a_few_steps_lower_each_image_loss():
    """Against a fixed teacher (momentum 1, frozen centre) the student's DINO, iBOT and KoLeo
    losses all fall on a fixed batch with fixed views and masks."""
    torch.manual_seed(0)
    m = _image_module(["objective.ema.momentum_start=1.0", "objective.ema.momentum_end=1.0",
                       "objective.loss.center_momentum=1.0", "objective.loss.warmup_teacher_temp=0.07",
                       "objective.loss.koleo_weight=1.0", "objective.ibot.mask_probability=1.0"])
    opt = m.configure_optimizers()["optimizer"]
    for g in opt.param_groups:
        g["lr"] = 1e-3
    x = torch.from_numpy(toy_rows(6)["image"])

    def step(train: bool) -> dict[str, float]:
        torch.manual_seed(123)
        with torch.set_grad_enabled(train):
            out = m.losses(x)
        if train:
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            m.on_train_batch_end(None, None, 0)
        return {k: v.item() for k, v in out.items()}

    before = step(False)
    for _ in range(5):
        step(True)
    after = step(False)
    for key in ("dino_loss", "ibot_loss", "koleo_loss"):
        assert after[key] < before[key], (key, before, after)


# ---------------------------------------------------------------- spectrum: masked modelling
def test_span_mask_is_contiguous_spans():
    torch.manual_seed(0)
    m = span_mask(64, 778, n_spans=6, span_len=50)
    assert m.shape == (64, 778)
    counts = m.sum(1)
    assert (counts >= 50).all() and (counts <= 300).all()
    starts = (m[:, 1:] & ~m[:, :-1]).sum(1) + m[:, 0]
    assert (starts <= 6).all()                       # at most 6 separate runs


def test_masked_mse_counts_only_selected_pixels():
    pred, target = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    sel = torch.zeros(2, 3, 4, dtype=torch.bool)
    sel[0, 1] = True
    pred[1] = 100.0                                  # errors outside the selection do not count
    assert masked_mse(pred, target, sel) == pytest.approx(1.0)
    w = torch.ones(2, 3, 4)
    w[0, 1, :2] = 3.0
    pred[0, 1, :2] = 0.5                             # weighted mean of 0.25 (w=3) and 1 (w=1)
    assert masked_mse(pred, target, sel, w) == pytest.approx((2 * 3 * 0.25 + 2 * 1.0) / 8)
    assert masked_mse(pred, target, torch.zeros_like(sel)) == 0


@pytest.mark.parametrize("ivar_weighting", [False, True])
def test_a_few_steps_lower_the_spectrum_loss_and_bad_pixels_play_no_part(ivar_weighting):
    torch.manual_seed(0)
    cfg = pretrain_config("spectrum", None,
                          TINY["spectrum"] + [f"objective.loss.ivar_weighting={ivar_weighting}"])
    m = build_module("spectrum", cfg)
    opt = m.configure_optimizers()["optimizer"]
    rows = toy_rows(4)
    flux, ivar = torch.from_numpy(rows["spectrum_flux"]), torch.from_numpy(rows["spectrum_ivar"])
    mask = span_mask(4, m.encoder.cfg.n_slices, 6, 50)
    mask[:, 195:205] = True                          # hide the slices holding the bad pixels too
    m.eval()
    with torch.no_grad():
        before = m.losses(flux, ivar, mask)["loss"]
        junk = flux.clone()
        junk[:, BAD] = 1e4
        assert torch.equal(m.losses(junk, ivar, mask)["loss"], before)
    m.train()
    for _ in range(5):
        opt.zero_grad()
        m.losses(flux, ivar, mask)["loss"].backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
        opt.step()
    m.eval()
    with torch.no_grad():
        assert m.losses(flux, ivar, mask)["loss"] < before


# ---------------------------------------------------------------- runs: resume, CLI
class KillAt(L.Callback):
    """Stands in for a kill -9 right after step ``step`` (no checkpoint is written on the way out)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise SystemError("killed")


class RecordStart(L.Callback):
    def on_train_start(self, trainer, module) -> None:
        self.start = trainer.global_step


@pytest.mark.slow
def test_resume_after_a_kill_continues_from_the_saved_step(toy_dataset, tmp_path):
    out = tmp_path / "run"
    args = TINY["spectrum"] + RUN + ["trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2"]
    with pytest.raises(SystemError):
        train("pretrain-spectrum", toy_dataset, out, None, args, callbacks=[KillAt(4)])
    assert not (out / "encoder.safetensors").exists()
    # step 2 ends an epoch (2 batches each): its checkpoint is written after step 3
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    rec = RecordStart()
    path = train("pretrain-spectrum", toy_dataset, out, None, args, callbacks=[rec])
    assert rec.start == 3
    assert read_metadata(path)["pretrain_steps"] == "4"
    assert load_encoder(path).modality == "spectrum"
    with pytest.raises(ConfigError, match="different config"):
        train("pretrain-spectrum", toy_dataset, out, None, args + ["optim.lr=1e-2"])


def test_cli_pretrain_writes_config_logs_and_encoder(toy_dataset, tmp_path, capsys):
    from galclip.cli import main
    from galclip.config import read_yaml

    out = tmp_path / "cli"
    config = tmp_path / "masked.yaml"
    config.write_text("objective:\n  name: masked\n  mask: {n_spans: 6, span_len: 13}\n")
    rc = main(["pretrain", "spectrum", "--config", str(config), "--data", str(toy_dataset),
               "--out", str(out), *TINY["spectrum"], *RUN, "trainer.max_steps=2", "optim.lr=2e-3"])
    assert rc == 0 and "encoder.safetensors" in capsys.readouterr().out
    saved = read_yaml(out / "config.yaml")
    assert saved["optim"]["lr"] == 2e-3 and saved["model"]["depth"] == 1
    assert saved["objective"]["mask"] == {"n_spans": 6, "span_len": 13}  # from the file
    lines = (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert "train/loss" in lines[0] and len(lines) == 3
    assert all(math.isfinite(float(v)) for v in lines[1].split(",") if v)
    assert main(["pretrain", "image", "--data", str(toy_dataset), "--out", str(out),
                 "optim.lr=1"]) == 2                 # a clear error, not a traceback


def test_pretraining_uses_train_rows_that_have_the_modality(tmp_path):
    import numpy as np

    from galclip.data import Provenance, open_dataset, shard_name, write_manifest, write_shard
    from galclip.data.splits import split_indices
    from galclip.train.data import split_rows

    rows = toy_rows(40)
    rows["has_image"] = np.arange(40) % 3 != 0
    out = tmp_path / "ds"
    out.mkdir()
    write_manifest(out, [write_shard(out / shard_name(0), rows)], Provenance(command="test", seed=0))
    ds = open_dataset(out)
    train = split_indices(rows["object_id"], "train")
    assert list(split_rows(ds, "train", ("image",))) == [i for i in train if i % 3 != 0]
    assert list(split_rows(ds, "train", ("spectrum",))) == list(train)
    assert list(split_rows(ds, "val", max_rows=2)) == list(split_indices(rows["object_id"], "val")[:2])
