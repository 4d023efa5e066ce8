"""Run one training stage in a subprocess, optionally killed (SIGKILL, no clean-up) at a chosen
point: ``python resume_worker.py STAGE DATA OUT CONFIG KILL [override ...]``.

``KILL`` is ``-`` (run to the end), ``step:N`` (killed as step N + 1 starts, after the
checkpoint of step N) or ``epoch:E`` (killed as epoch E's first step starts, after the
epoch-end checkpoint of epoch E - 1)."""
from __future__ import annotations

import os
import signal
import sys

import lightning as L


class Kill(L.Callback):
    def __init__(self, where: str):
        kind, _, n = where.partition(":")
        self.kind, self.n = kind, int(n)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        hit = (trainer.global_step == self.n if self.kind == "step"
               else trainer.current_epoch == self.n and batch_idx == 0)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)


def main(stage: str, data: str, out: str, config: str, kill: str, *overrides: str) -> None:
    from galclip.train.runner import train

    train(stage, data, out, config, overrides, callbacks=[Kill(kill)] if kill != "-" else [])


if __name__ == "__main__":
    main(*sys.argv[1:])
