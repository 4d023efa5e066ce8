"""Exact resume: every training stage, killed with SIGKILL in a subprocess (mid-epoch, and right
after an epoch-end checkpoint), then rerun, ends with the bit-identical weights of the run that
was never interrupted (CPU)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain_toys import write_toy_dataset

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
RUN = ["data.batch_size=16", "trainer.progress_bar=false", "optim.warmup_steps=1",
       "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=3"]
#: stage, preset, weights file, overrides; kills: (where, what it exercises)
STAGES = {
    "align": ("align", "cpu", "model.safetensors",
              ["model.embed_dim=32", "data.val_batch_size=64", "trainer.max_epochs=3"]),
    "pretrain-image": ("pretrain-image", "image-cpu", "encoder.safetensors", ["trainer.max_steps=12"]),
    "pretrain-spectrum": ("pretrain-spectrum", "spectrum-cpu", "encoder.safetensors",
                          ["trainer.max_steps=12"]),
}
# 5 steps an epoch: checkpoints at steps 3 and 6 (6 is mid-epoch 1; 9 and 12 too); alignment
# also checkpoints each epoch end (after its validation), pretraining has none to validate
KILLS = {"mid-epoch": "step:8", "epoch-boundary": "epoch:1"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("exact") / "ds", n_per_shard=40, n_shards=3)


def run(stage: str, data: Path, out: Path, kill: str = "-") -> int:
    name, preset, _, extra = STAGES[stage]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    cmd = [sys.executable, str(TESTS / "resume_worker.py"), name, str(data), str(out), preset, kill,
           *RUN, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    done = {}
    for stage in STAGES:
        assert run(stage, dataset, root / stage) == 0
        done[stage] = root / stage / STAGES[stage][2]
    return done


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


@pytest.mark.slow
@pytest.mark.parametrize("kill", sorted(KILLS))
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_killed_run_resumes_to_the_same_weights(stage, kill, dataset, uninterrupted, tmp_path):
    out = tmp_path / "run"
    assert run(stage, dataset, out, KILLS[kill]) == -signal.SIGKILL
    assert (out / "checkpoints" / "last.ckpt").is_file()  # there is something to resume from
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert 0 < state["global_step"] < 12
    assert run(stage, dataset, out) == 0
    a, b = weights(uninterrupted[stage]), weights(out / STAGES[stage][2])
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def test_a_resumed_sampler_skips_what_the_epoch_already_read():
    import numpy as np

    from galclip.train.data import BlockShuffleSampler, EpochSampler
    from galclip.train.resumable import ResumableLoader

    rows = np.arange(40)
    for sampler in (EpochSampler(rows, seed=3), BlockShuffleSampler(rows, rows // 8, 2, seed=3)):
        loader = ResumableLoader(rows, sampler, 4, drop_last=True)
        sampler.set_epoch(2)
        whole = [b.tolist() for b in loader]
        it = iter(loader)
        first = [next(it).tolist() for _ in range(3)]
        state = loader.state_dict()
        assert state == {"epoch": 2, "batches": 3} and first == whole[:3]
        sampler.set_epoch(0)                      # a fresh process: another epoch, no position
        loader.load_state_dict(state)
        sampler.set_epoch(2)                      # what Lightning calls before the epoch runs
        assert [b.tolist() for b in loader] == whole[3:]
        assert [b.tolist() for b in loader] == whole  # the skip applied once
        sampler.set_epoch(3)
        assert [b.tolist() for b in loader] != whole  # each epoch its own order


def test_step_seeds_depend_on_seed_step_and_rank_only():
    from galclip.train.resumable import step_seed

    assert step_seed(0, 5) == step_seed(0, 5)
    assert len({step_seed(0, 5), step_seed(0, 6), step_seed(1, 5), step_seed(0, 5, rank=1)}) == 4


def test_feature_cache_returns_the_same_rows_whatever_it_holds():
    from galclip.train.feature_cache import FeatureCache

    torch.manual_seed(0)
    x = torch.randn(6, 5)

    def backbone(rows):
        return {"pooled": x[rows] * 1.0001}

    warm, cold = FeatureCache(1e9), FeatureCache(1e9)
    warm.get(list(range(3)), backbone, torch.device("cpu"))  # rows 0-2 stored already
    a = warm.get(list(range(6)), backbone, torch.device("cpu"))
    b = cold.get(list(range(6)), backbone, torch.device("cpu"))
    assert torch.equal(a["pooled"], b["pooled"]) and a["pooled"].dtype == torch.float32


def test_baselines_and_probes_rerun_from_scratch_to_the_same_weights():
    """Evaluation's supervised baselines and probes are short: a killed ``galclip evaluate``
    reruns an unfinished one from its start, and every random stream it draws from is seeded
    inside ``fit`` (weights, batch order, augmentations, the validation split), so the rerun
    ends with the same weights whatever the process did before (here: other draws)."""
    import numpy as np

    from galclip import conventions as C
    from galclip.eval.baselines import (
        LogLambdaConv,
        SupervisedBaseline,
        SupervisedConfig,
        preprocess_log_spectra,
    )
    from galclip.eval.probes import MLPProbe, ProbeConfig

    rng = np.random.default_rng(0)
    flux = (1 + 0.1 * rng.standard_normal((48, C.N_WAVE))).astype(np.float32)
    x = preprocess_log_spectra(flux, np.full_like(flux, 100.0))
    y = rng.standard_normal((48, 1))

    def baseline(draws: int):
        torch.rand(draws), np.random.rand(draws)            # what ran before in the process
        torch.manual_seed(0)                                # as evaluate, before the backbone
        net = SupervisedBaseline(LogLambdaConv(channels=[4, 8], embed_dim=8),
                                 SupervisedConfig(epochs=2, batch_size=16, seed=0))
        return net.fit(x, y, {}).net.state_dict()

    def probe(draws: int):
        torch.rand(draws)
        feats = x["flux"].numpy()[:, :32]
        return MLPProbe("regression", ProbeConfig(epochs=3)).fit(feats, y).net.state_dict()

    for fit in (baseline, probe):
        a, b = fit(1), fit(7)
        assert all(torch.equal(a[k], b[k]) for k in a)
