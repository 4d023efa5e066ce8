"""One rank of the 2-process DDP check in test_clip_ddp.py (run as a subprocess, gloo on CPU).

Rank r embeds its slice of a fixed batch (rank 0: rows 0-2, rank 1: rows 3-4), gathers the
embeddings with gradients, computes the global loss and backpropagates through DDP; rank 0 saves
the loss and every parameter gradient to argv[1].
"""
import os
import sys

import torch
import torch.distributed as dist

from clip_toys import toy_batch, toy_clip
from galclip.train.distributed import gather_with_grad
from galclip.train.losses import clip_loss

dist.init_process_group("gloo")
rank = dist.get_rank()
model = torch.nn.parallel.DistributedDataParallel(toy_clip(seed=0))
rows = slice(0, 3) if rank == 0 else slice(3, 5)
images, flux, ivar = (x[rows] for x in toy_batch(5, seed=1))
out = model(images, flux, ivar)
loss = clip_loss(gather_with_grad(out["image_embedding"]), gather_with_grad(out["spectrum_embedding"]),
                 out["logit_scale"])["contrastive_loss"]
loss.backward()
if rank == 0:
    grads = {n: p.grad.clone() for n, p in model.module.named_parameters()}
    torch.save({"loss": loss.detach(), "grads": grads}, sys.argv[1])
dist.destroy_process_group()
os._exit(0)
