"""Exact resume: every training stage, killed with SIGKILL mid-epoch, rerun, killed again right
after an epoch-end checkpoint and rerun to the end, passes through the very states of the run
that was never interrupted and ends with its bit-identical weights (CPU).

The runs are legs of one worker process (tests/resume_worker.py): each leg is a child forked from
it and killed for real, while torch, Lightning and galclip are imported once for all of them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain_toys import write_toy_dataset
from resume_worker import assert_same, checkpoint, tensors

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
# the first 12 training rows in batches of 4: 3 steps an epoch, 9 in all; checkpoints every 2
RUN = ["data.max_rows=12", "data.batch_size=4", "trainer.progress_bar=false", "optim.warmup_steps=1",
       "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=2"]
#: stage, preset, weights file, overrides
STAGES = {
    "align": ("cpu", "model.safetensors",
              ["model.embed_dim=32", "data.val_batch_size=64", "trainer.max_epochs=3"]),
    "pretrain-image": ("image-cpu", "encoder.safetensors", ["trainer.max_steps=9"]),
    "pretrain-spectrum": ("spectrum-cpu", "encoder.safetensors", ["trainer.max_steps=9"]),
}
# mid-epoch: killed after step 2, the checkpoint of step 2 (epoch 0, 2 of its 3 batches read).
# between epochs: killed as epoch 2 starts; alignment left the checkpoint it writes after each
# epoch's validation (step 6), pretraining (nothing to validate, so no epoch-end checkpoint) the
# step-4 one, 1 batch into epoch 1: its rerun crosses the boundary into epoch 2 itself
MID, BOUNDARY = "step:2", "epoch:2"
LEFT = {MID: {stage: (2, {"epoch": 0, "batches": 2}) for stage in STAGES},
        BOUNDARY: {"align": (6, {"epoch": 1, "batches": 3}),
                   "pretrain-image": (4, {"epoch": 1, "batches": 1}),
                   "pretrain-spectrum": (4, {"epoch": 1, "batches": 1})}}


def leg(stage: str, data: Path, out: Path, kill: str | None = None, snapshots=()) -> dict:
    preset, _, extra = STAGES[stage]
    return {"stage": stage, "data": str(data), "out": str(out), "config": preset,
            "overrides": [*RUN, *extra], "kill": kill, "snapshots": list(snapshots)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, Path, list[int]]]:
    """stage -> (the run never interrupted, the killed-and-rerun one, the legs' exit statuses)."""
    root = tmp_path_factory.mktemp("exact")
    data = write_toy_dataset(root / "ds", n_per_shard=14, n_shards=3)
    legs = []
    for stage in STAGES:
        whole, run = root / "whole" / stage, root / "run" / stage
        legs += [leg(stage, data, whole, snapshots=[MID, BOUNDARY]), leg(stage, data, run, MID),
                 leg(stage, data, run, BOUNDARY), leg(stage, data, run)]
    plan = root / "plan.json"
    plan.write_text(json.dumps({"legs": legs, "result": str(root / "codes.json")}))
    # one intra-op thread: on a busy 2-core machine two threads spin waiting for each other (7x
    # the CPU time, measured); exactness does not rest on the thread count (benchmarks/faults.py
    # kills and resumes the training commands at the default one)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(TESTS / "resume_worker.py"), str(plan)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads((root / "codes.json").read_text())
    return {stage: (root / "whole" / stage, root / "run" / stage, codes[4 * i:4 * i + 4])
            for i, stage in enumerate(STAGES)}


def assert_left(stage: str, run: Path, point: str) -> dict:
    """The killed leg left the checkpoint it should have (step, loader position); returned."""
    from galclip.train.resumable import LoaderPosition

    state = checkpoint(run / f"killed-{point.replace(':', '-')}.ckpt")
    assert (state["global_step"], state[LoaderPosition.KEY]) == LEFT[point][stage]
    return state


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_run_killed_mid_epoch_resumes_through_the_same_states(stage, runs):
    whole, run, codes = runs[stage]
    assert codes[1:3] == [-signal.SIGKILL, -signal.SIGKILL]
    assert_same(tensors(checkpoint(whole / "at-step-2.ckpt")), tensors(assert_left(stage, run, MID)))
    # rerun from the mid-epoch checkpoint to the next kill: every tensor of its state there
    # (weights, optimizer, objective buffers, logged results) is the uninterrupted run's
    assert_same(tensors(checkpoint(whole / "at-epoch-2.ckpt")),
                tensors(checkpoint(run / "killed-epoch-2.ckpt")))


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_run_killed_between_epochs_resumes_to_the_same_weights(stage, runs):
    from safetensors.torch import load_file

    whole, run, codes = runs[stage]
    assert codes == [0, -signal.SIGKILL, -signal.SIGKILL, 0]
    assert_left(stage, run, BOUNDARY)
    weights = STAGES[stage][1]
    assert_same(load_file(whole / weights), load_file(run / weights))
    assert_same(tensors(checkpoint(whole / "checkpoints" / "last.ckpt")),
                tensors(checkpoint(run / "checkpoints" / "last.ckpt")))


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
