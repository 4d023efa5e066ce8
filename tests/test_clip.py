"""The CLIP model, its loss, heads, checkpoints, retrieval metrics and inference."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clip_toys import nano_clip, toy_batch
from galclip.models.clip import load_model, save_model
from galclip.models.heads import CrossAttentionPool
from galclip.retrieval_metrics import match_ranks, pooled_ranks, retrieval_metrics
from galclip.train.losses import clip_loss


def test_loss_on_hand_made_2x2_example():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    spec = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits = 2 * img @ spec.T = [[2, 1.2], [0, 1.6]]
    i2s = (math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(-1.6))) / 2   # rows
    s2i = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-0.4))) / 2   # columns
    loss = clip_loss(img, spec, torch.tensor(2.0))["contrastive_loss"]
    assert loss.item() == pytest.approx((i2s + s2i) / 2, rel=1e-6)


def test_embeddings_unit_norm_and_batch_of_one():
    model = nano_clip()
    for n in (1, 3):
        out = model(*toy_batch(n))
        for key in ("image_embedding", "spectrum_embedding"):
            assert out[key].shape == (n, 8)
            assert torch.allclose(out[key].norm(dim=1), torch.ones(n), atol=1e-5)
    assert out["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_physical_numpy_inputs_accepted():
    model = nano_clip().eval()
    images, flux, ivar = toy_batch(2)
    z = model.encode_spectrum(flux.numpy(), ivar.numpy())
    assert torch.allclose(z, model.encode_spectrum(flux, ivar))
    assert model.encode_image(images.numpy()).shape == (2, 8)


def test_frozen_backbones_build_no_graph_and_get_no_grads():
    model = nano_clip()
    for enc in (model.image_encoder, model.spectrum_encoder):
        enc.requires_grad_(False)
    out = model(*toy_batch(3))
    clip_loss(out["image_embedding"], out["spectrum_embedding"], out["logit_scale"]
              )["contrastive_loss"].backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(p.grad is None for p in model.spectrum_encoder.parameters())
    assert all(p.grad is not None for p in model.image_head.parameters())
    assert model.log_logit_scale.grad is not None


@pytest.mark.slow
def test_logit_scale_learnable_trains_and_fixed_is_the_configured_value():
    model = nano_clip()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = model.logit_scale().item()
    for step in range(3):
        out = model(*toy_batch(4, seed=step))
        clip_loss(out["image_embedding"], out["spectrum_embedding"], out["logit_scale"]
                  )["contrastive_loss"].backward()
        opt.step()
        opt.zero_grad()
    assert model.logit_scale().item() != pytest.approx(before, abs=1e-4)
    fixed = nano_clip(logit_scale_init=20.0, learn_logit_scale=False)
    assert not fixed.log_logit_scale.requires_grad
    assert fixed(*toy_batch(2))["logit_scale"].item() == pytest.approx(20.0, rel=1e-6)
    clamped = nano_clip()
    with torch.no_grad():
        clamped.log_logit_scale.fill_(math.log(500.0))
    assert clamped.logit_scale().item() == pytest.approx(100.0, rel=1e-5)
    with pytest.raises(ValueError, match="logit_scale_init"):
        nano_clip(logit_scale_init=200.0)


def test_pooling_ignores_padded_tokens():
    torch.manual_seed(0)
    pool = CrossAttentionPool(16, num_heads=4).eval()
    tokens = torch.randn(2, 6, 16)
    mask = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    changed = tokens.clone()
    changed[0, 4:] = 100.0
    assert torch.allclose(pool(tokens, mask), pool(changed, mask), atol=1e-6)
    assert not torch.allclose(pool(tokens, None)[0], pool(changed, None)[0])
    assert torch.isfinite(pool(tokens, torch.ones(2, 6, dtype=torch.bool))).all()


def test_checkpoint_round_trip_identical(tmp_path):
    model = nano_clip(logit_scale_init=25.0).eval()
    path = save_model(model, tmp_path / "model.safetensors", extra={"step": 7})
    loaded = load_model(path)
    assert loaded.config == model.config and not loaded.training
    batch = toy_batch(3)
    a, b = model(*batch), loaded(*batch)
    for key in a:
        assert torch.equal(a[key], b[key])
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model(tmp_path / "bad.safetensors")


def test_retrieval_ranks_and_metrics_by_hand():
    q = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    g = np.array([[1, 0.1], [1, 0], [1, 1.1]], dtype=np.float32)
    # query 0: best g1 (1.0) > g0 (0.995) -> rank 2; query 1: g2 best (.74) -> g1 is last: rank 3
    assert match_ranks(q, g).tolist() == [2, 3, 1]
    m = retrieval_metrics(q, q)
    assert m["image_to_spectrum/R@1"] == 1.0 and m["spectrum_to_image/median_rank"] == 1.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2500, 4))
    ranks = pooled_ranks(x, rng.normal(size=(2500, 4)), pool_size=1000)
    assert len(ranks) == 2000 and ranks.max() <= 1000
    assert 400 < np.median(ranks) < 600  # chance level is pool_size / 2


@pytest.mark.slow
def test_embed_dataset_keeps_every_row_in_order(tiny_dataset):
    from torch.utils.data import Subset

    from galclip.data import open_dataset
    from galclip.models.inference import embed_dataset, iter_embeddings

    ds = open_dataset(tiny_dataset, verify=False)
    model = nano_clip().train()
    out = embed_dataset(model, ds, batch_size=50)
    assert model.training  # mode restored
    ids = ds.read_columns(["object_id"])["object_id"]
    assert len(out["object_id"]) == len(out["image_embedding"]) == len(ds) == 120
    assert (out["object_id"] == ids).all()
    sub = Subset(ds, [5, 2, 77])
    rows = list(iter_embeddings(model, sub, batch_size=2, modalities=("spectrum",)))
    assert [len(r["object_id"]) for r in rows] == [2, 1] and "image_embedding" not in rows[0]
    assert np.concatenate([r["object_id"] for r in rows]).tolist() == [5, 2, 77]
    ref = model.eval().encode_spectrum(*[torch.as_tensor(ds[77][c])[None]
                                         for c in ("spectrum_flux", "spectrum_ivar")])
    assert np.allclose(rows[1]["spectrum_embedding"], ref.detach().numpy(), atol=1e-5)
