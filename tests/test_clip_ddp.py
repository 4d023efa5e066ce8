"""Under DDP, negatives span the global batch: 2 ranks equal one process on the whole batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clip_toys import toy_batch, toy_clip
from conftest import free_port
from galclip.train.losses import clip_loss

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_two_rank_ddp_equals_one_process_on_concatenated_batch(tmp_path):
    out_file = tmp_path / "rank0.pt"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, str(HERE / "ddp_clip_worker.py"), str(out_file)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in range(2)]
    logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    ddp = torch.load(out_file)

    model = toy_clip(seed=0)
    out = model(*toy_batch(5, seed=1))
    loss = clip_loss(out["image_embedding"], out["spectrum_embedding"], out["logit_scale"]
                     )["contrastive_loss"]
    loss.backward()
    assert torch.allclose(ddp["loss"], loss.detach(), atol=1e-6)
    for name, p in model.named_parameters():
        # float32 summation order differs (two ranks' partial sums, then the all-reduce): an
        # absolute tolerance on the tensor's own scale (worst seen 2e-6 of the largest element,
        # AMD EPYC); a wrong gather or a missing negative moves gradients by O(1) of it
        scale = float(p.grad.abs().max())
        assert torch.allclose(ddp["grads"][name], p.grad, atol=1e-5 * scale + 1e-8, rtol=1e-4), name
