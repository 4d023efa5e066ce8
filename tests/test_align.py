"""``galclip align``: a run end to end on a tiny dataset, resume, frozen backbones, lr decay,
augmentations."""
from __future__ import annotations

import csv
from dataclasses import replace

import pytest
import torch

#: the CPU preset fine-tunes the image backbone; these make both backbones frozen
FROZEN = ["optim.finetune=[]", "objective.augment.image_shift=0"]
TINY = ["model.embed_dim=32", "data.batch_size=16", "optim.warmup_steps=1", "data.val_batch_size=64",
        "trainer.checkpoint_every_n_steps=1", "trainer.log_every_n_steps=1"]


@pytest.fixture
def encoder_files(tmp_path):
    from galclip.models import create_encoder, save_encoder

    torch.manual_seed(1)
    return (save_encoder(create_encoder("image-nano"), tmp_path / "img.safetensors"),
            save_encoder(create_encoder("spectrum-nano"), tmp_path / "spec.safetensors"))


@pytest.mark.slow
def test_align_cli_run_frozen_loadable_and_resumable(tiny_dataset, encoder_files, tmp_path):
    import galclip
    from galclip.cli import main
    from galclip.config import ConfigError
    from galclip.models import load_encoder
    from galclip.models.clip import read_checkpoint_metadata
    from galclip.train.runner import train
    from galclip.train.schema import train_config

    out = tmp_path / "run"
    args = ["align", "--config", "cpu", "--data", str(tiny_dataset), "--out", str(out),
            "--image-encoder", str(encoder_files[0]), "--spectrum-encoder", str(encoder_files[1]),
            *TINY, *FROZEN]
    assert main([*args, "trainer.max_epochs=1"]) == 0
    model = galclip.load_model(out / "model.safetensors")
    assert model.embed_dim == 32 and "batch_size: 16" in (out / "config.yaml").read_text()
    assert model.logit_scale().item() != pytest.approx(1 / 0.07, abs=1e-4)  # the scale trains
    for enc, path in zip((model.image_encoder, model.spectrum_encoder), encoder_files, strict=True):
        ref = load_encoder(path).state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in enc.state_dict().items())  # frozen
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    n_head = sum(1 for n, _ in model.named_parameters() if not n.split(".")[0].endswith("_encoder"))
    assert len(state["optimizer_states"][0]["state"]) == n_head  # heads + scale; no backbone state
    steps = state["global_step"]
    rows = list(csv.DictReader(open(out / "logs" / "version_0" / "metrics.csv")))
    key = "val/image_to_spectrum/median_rank"
    medians = [r[key] for r in rows if r.get(key)]
    assert medians and 1 <= float(medians[-1]) <= 12

    first = (out / "model.safetensors").stat().st_mtime_ns
    assert main([*args, "trainer.max_epochs=1"]) == 0  # finished with the same inputs: a no-op
    assert (out / "model.safetensors").stat().st_mtime_ns == first
    assert not (out / "logs" / "version_1").exists()
    cfg = train_config("align", "cpu", [*TINY, *FROZEN, "trainer.max_epochs=2",
                                 f"model.image_checkpoint={encoder_files[0]}",
                                 f"model.spectrum_checkpoint={encoder_files[1]}"])
    train("align", tiny_dataset, out, cfg)  # a longer run resumes where the first stopped
    extra = read_checkpoint_metadata(out / "model.safetensors")["extra"]
    assert steps > 0 and extra["resumed_from_step"] == steps and extra["global_step"] == 2 * steps
    with pytest.raises(ConfigError, match="model.embed_dim"):
        train("align", tiny_dataset, out, replace(cfg, model=replace(cfg.model, embed_dim=16)))


def test_layerwise_lr_decay_when_fine_tuning():
    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP
    from galclip.train.clip import clip_param_groups
    from galclip.train.schema import train_config

    model = GalaxyCLIP(create_encoder("image-nano"), create_encoder("spectrum-nano"), embed_dim=16)
    tcfg = replace(train_config("align").optim, lr=1.0, backbone_lr_scale=0.1, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in clip_param_groups(model, tcfg) for p in g["params"]}
    named = dict(model.named_parameters())
    depth = len(model.image_encoder.backbone.blocks)  # image-nano: 4 blocks
    assert lr_of[id(named["image_head.pool.query"])] == 1.0
    assert lr_of[id(named["image_encoder.backbone.norm.weight"])] == pytest.approx(0.1)
    for i in range(depth):
        want = 0.1 * 0.5 ** (depth - i)
        assert lr_of[id(named[f"image_encoder.backbone.blocks.{i}.attn.qkv.weight"])] == pytest.approx(want)
    assert lr_of[id(named["image_encoder.backbone.patch_embed.proj.weight"])] == pytest.approx(0.1 * 0.5 ** 5)
    model.spectrum_encoder.requires_grad_(False)
    frozen = {id(p) for p in model.spectrum_encoder.parameters()}
    assert not frozen & {id(p) for g in clip_param_groups(model, tcfg) for p in g["params"]}


def test_augmentations_respect_the_physics():
    from galclip.augment import ivar_noise, random_dihedral

    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        out = random_dihedral(img, g)
        assert out.shape == img.shape
        assert torch.equal(out[0].flatten().sort().values, img[0].flatten().sort().values)
        seen.add(tuple(out[0, 0].flatten().tolist()))
    assert len(seen) == 8  # all rotations and flips occur
    flux, ivar = torch.zeros(4000, 10), torch.full((4000, 10), 4.0)
    ivar[:, 0] = 0
    noisy = ivar_noise(flux, ivar, scale=1.0, generator=g)
    assert torch.equal(noisy[:, 0], flux[:, 0])  # bad pixels untouched
    assert noisy[:, 1:].std().item() == pytest.approx(0.5, rel=0.05)  # sigma = 1 / sqrt(ivar)
    assert torch.equal(ivar_noise(flux, ivar, scale=0.0), flux)


def test_alignment_uses_only_rows_with_both_modalities(tmp_path):
    import numpy as np

    from conftest import random_rows
    from galclip.data import Provenance, open_dataset, shard_name, write_manifest, write_shard
    from galclip.train.data import split_rows

    rows = random_rows(60)
    rows["has_image"] = np.arange(60) % 3 != 0
    rows["has_spectrum"] = np.arange(60) % 5 != 0
    write_manifest(tmp_path, [write_shard(tmp_path / shard_name(0), rows)], Provenance(command="test"))
    ds = open_dataset(tmp_path)
    got = np.concatenate([split_rows(ds, s, ("image", "spectrum")) for s in ("train", "val", "test")])
    assert sorted(got.tolist()) == [i for i in range(60) if i % 3 and i % 5]


@pytest.mark.slow
def test_feature_cache_gives_the_same_embeddings_and_skips_backbones():
    from clip_toys import nano_clip, toy_batch
    from galclip.augment import apply_dihedral
    from galclip.config import ConfigError
    from galclip.train.clip import CLIPModule
    from galclip.train.schema import train_config

    cfg = train_config("align", None, ["objective.cache_backbone_features=true"])
    module = CLIPModule(cfg, nano_clip()).eval()
    images, flux, ivar = toy_batch(3)
    batch = {"object_id": torch.tensor([7, 8, 9]), "image": images, "spectrum_flux": flux,
             "spectrum_ivar": ivar}
    with torch.no_grad():
        first = module._embed(batch, augment=False)
        calls = []
        module.model.spectrum_encoder.register_forward_hook(lambda *a: calls.append(1))
        again = module._embed(batch, augment=False)
        assert not calls and module.cache.hits == 6  # second pass: backbones not run
        direct = module.model(images, flux, ivar)
        rotated = module._embed(batch, augment=True)  # spectra cached, new image views computed
    for key in ("image_embedding", "spectrum_embedding"):
        assert torch.allclose(first[key], again[key], atol=2e-3)
        assert torch.allclose(first[key], direct[key], atol=2e-3)  # float16 storage
    assert torch.allclose(rotated["spectrum_embedding"], direct["spectrum_embedding"], atol=2e-3)
    assert apply_dihedral(images[:1], [1], [True]).shape == (1, 3, 152, 152)
    with pytest.raises(ConfigError, match="freeze_backbones"):
        CLIPModule(replace(cfg, optim=replace(cfg.optim, freeze_backbones=False)), nano_clip())


@pytest.mark.slow
def test_partial_fine_tuning_trains_the_image_backbone_only(tiny_dataset, encoder_files, tmp_path):
    """The CPU recipe: the image backbone fine-tunes (jittered views, never cached) against the
    frozen, cached spectrum backbone, with the neighbourhood term keeping the spectrum's structure."""
    import galclip
    from galclip.models import load_encoder
    from galclip.models.clip import frozen_modalities
    from galclip.train.runner import train
    from galclip.train.schema import train_config

    cfg = train_config("align", "cpu", [*TINY, "trainer.max_epochs=1",
                                          f"model.image_checkpoint={encoder_files[0]}",
                                          f"model.spectrum_checkpoint={encoder_files[1]}"])
    assert frozen_modalities(cfg.optim.freeze_backbones, cfg.optim.finetune) == {"spectrum"}
    assert cfg.objective.augment.image_shift > 0
    out = train("align", tiny_dataset, tmp_path / "run", cfg)
    model = galclip.load_model(out)
    changed = {}
    for m, path in zip(("image", "spectrum"), encoder_files, strict=True):
        ref = load_encoder(path).state_dict()
        own = getattr(model, f"{m}_encoder").state_dict()
        changed[m] = any(not torch.equal(v, ref[k]) for k, v in own.items() if v.is_floating_point())
    assert changed == {"image": True, "spectrum": False}
    rows = list(csv.DictReader(open(tmp_path / "run" / "logs" / "version_0" / "metrics.csv")))
    assert any(r.get("train/neighbourhood_loss") for r in rows)


@pytest.mark.slow
def test_neighbourhood_loss_is_zero_for_the_same_geometry_and_trains_towards_it():
    from galclip.train.losses import neighbourhood_loss

    g = torch.Generator().manual_seed(0)
    ref = torch.randn(32, 8, generator=g)
    rot = torch.linalg.qr(torch.randn(8, 8, generator=g))[0]
    assert neighbourhood_loss(ref @ rot, ref)["neighbourhood_loss"].item() == pytest.approx(0, abs=1e-5)
    emb = torch.randn(32, 8, generator=g, requires_grad=True)
    opt = torch.optim.Adam([emb], lr=0.05)
    first = None
    for _ in range(50):
        loss = neighbourhood_loss(emb, ref)["neighbourhood_loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    with pytest.raises(ValueError, match="same N"):
        neighbourhood_loss(emb[:3], ref)


def test_jitter_crops_conserve_a_centred_sources_flux():
    from galclip.augment import random_crops

    img = torch.zeros(16, 3, 152, 152)
    img[:, :, 70:82, 70:82] = 1.0  # a compact source at the centre
    out = random_crops(img, 138, 7)
    assert out.shape == (16, 3, 138, 138)
    assert torch.allclose(out.sum((1, 2, 3)), img.sum((1, 2, 3)))
    assert len({tuple(torch.nonzero(o[0])[0].tolist()) for o in out}) > 1  # the centre moves


def test_feature_cache_mixes_stored_and_fresh_rows_under_bf16_autocast():
    """A batch partly cached (float16 rows) and partly fresh (bfloat16 under bf16-mixed, the GPU
    default) comes back as one float32 tensor, not autocast's refusal to stack the two."""
    from galclip.train.feature_cache import FeatureCache

    cache = FeatureCache(2**30)
    fresh = torch.randn(3, 5, 4)

    def backbone(rows):  # what a backbone under bf16 autocast returns for these rows of `fresh`
        return {"tokens": fresh[rows].to(torch.bfloat16),
                "padding_mask": torch.zeros(len(rows), 5, dtype=torch.bool)}

    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache.get(["a", "b"], backbone, torch.device("cpu"))  # both computed (rows 0, 1) and stored
        out = cache.get(["a", "c"], lambda miss: backbone([2] * len(miss)), torch.device("cpu"))
    assert out["tokens"].dtype == torch.float32 and out["padding_mask"].dtype == torch.bool
    assert torch.allclose(out["tokens"][0], fresh[0], atol=0.02)  # the stored row, float16 of bf16
    assert torch.allclose(out["tokens"][1], fresh[2], atol=0.02)  # the fresh one
