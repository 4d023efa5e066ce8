"""Exact resume under DDP: alignment on two processes (gloo on the CPU), killed mid-epoch, rerun,
killed right after an epoch-end checkpoint and rerun to the end, passes through the very states
of the two-process run that was never interrupted and ends with its bit-identical weights.

Bit-identical, not within a tolerance: on the CPU, gloo's all-reduce of two ranks adds the same
two partial gradients in a fixed order and the CPU kernels are deterministic, so nothing but the
resume could make the runs differ. On GPUs that does not hold (docs/align.md, "Exact resume")."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port
from pretrain_toys import write_toy_dataset
from resume_worker import assert_same, checkpoint, tensors

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
# each rank reads every other of the first 24 training rows, in batches of 4: 3 steps an epoch
RUN = ["data.max_rows=24", "data.batch_size=4", "trainer.progress_bar=false", "optim.warmup_steps=1",
       "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=2", "model.embed_dim=32",
       "data.val_batch_size=64", "trainer.max_epochs=3", "trainer.accelerator=cpu",
       "trainer.devices=2", "trainer.strategy=ddp"]
MID, BOUNDARY = "step:2", "epoch:2"


@pytest.mark.slow
def test_a_two_process_ddp_run_killed_and_resumed_passes_through_the_same_states(tmp_path):
    from safetensors.torch import load_file

    data = write_toy_dataset(tmp_path / "ds", n_per_shard=14, n_shards=3)
    whole, run = tmp_path / "whole", tmp_path / "run"

    def leg(out: Path, kill: str | None = None, snapshots=()) -> dict:
        return {"stage": "align", "data": str(data), "out": str(out), "config": "cpu",
                "overrides": RUN, "kill": kill, "snapshots": list(snapshots),
                "env": {"MASTER_PORT": str(free_port())}}

    legs = [leg(whole, snapshots=[MID, BOUNDARY]), leg(run, MID), leg(run, BOUNDARY), leg(run)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "NODE_RANK": "0"}
    workers = []
    for rank in range(2):
        plan = tmp_path / f"plan-{rank}.json"
        plan.write_text(json.dumps({"legs": legs, "result": str(tmp_path / f"codes-{rank}.json")}))
        workers.append(subprocess.Popen(
            [sys.executable, str(TESTS / "resume_worker.py"), str(plan)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    logs = [w.communicate(timeout=600)[1] for w in workers]
    assert all(w.returncode == 0 for w in workers), [log[-2000:] for log in logs]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1]         # one DDP run of two processes
    for rank in range(2):
        codes = json.loads((tmp_path / f"codes-{rank}.json").read_text())
        assert codes == [0, -signal.SIGKILL, -signal.SIGKILL, 0], (rank, logs[rank][-2000:])

    left = checkpoint(run / "killed-step-2.ckpt")
    assert left["global_step"] == 2 and left["galclip_train_loader"] == {"epoch": 0, "batches": 2}
    assert checkpoint(run / "killed-epoch-2.ckpt")["global_step"] == 6   # the epoch-end one
    # resumed mid-epoch, at the next kill point: every tensor of the state is the whole run's
    assert_same(tensors(checkpoint(whole / "at-epoch-2.ckpt")),
                tensors(checkpoint(run / "killed-epoch-2.ckpt")))
    # resumed between epochs, at the end: the weights
    assert_same(load_file(whole / "model.safetensors"), load_file(run / "model.safetensors"))
