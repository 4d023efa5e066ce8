"""Run training legs, each in a child process that may be killed (SIGKILL, no clean-up) at a
chosen point: ``python resume_worker.py PLAN.json``.

``PLAN.json`` holds ``{"legs": [...], "result": PATH}``; a leg is ``{"stage", "data", "out",
"config", "overrides", "kill", "snapshots", "env"}`` (``env``: variables set in the leg's
process, e.g. each DDP leg's ``MASTER_PORT``; one worker per rank runs a DDP plan, with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR`` in its environment, and only rank
zero keeps checkpoints aside). ``kill`` is ``null`` (run to the end), ``step:N``
(killed as step N + 1 starts, after the checkpoint of step N) or ``epoch:E`` (killed as epoch E's
first step starts, after the epoch-end checkpoint of epoch E - 1); ``snapshots`` lists such
points at which the leg copies its ``last.ckpt`` to ``OUT/at-<point>.ckpt`` and goes on (what
a killed run would leave there, from the run that was not killed). The legs run in order; the
``last.ckpt`` a killed leg left is kept as ``OUT/killed-<point>.ckpt`` (a later leg resuming
in the same folder overwrites ``last.ckpt``), and ``result`` gets each leg's exit status
(``-9``: killed).

This process imports torch, Lightning and galclip once and computes nothing itself; each leg
runs in a child forked from it (``os.fork``), so the import is paid once for all legs while each
leg is still its own process, killed for real. (A child forked after its parent ran torch's
OpenMP thread pool could hang, which is why the parent stays idle.)"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path

import lightning as L


def name(point: str) -> str:
    return point.replace(":", "-")


def hit(where: str, trainer, batch_idx: int) -> bool:
    kind, _, n = where.partition(":")
    return (trainer.global_step == int(n) if kind == "step"
            else trainer.current_epoch == int(n) and batch_idx == 0)


class Points(L.Callback):
    """Copy ``last.ckpt`` at each snapshot point; SIGKILL this process at the kill point."""

    def __init__(self, out: Path, kill: str | None, snapshots: list[str]):
        self.out, self.kill, self.snapshots = out, kill, snapshots

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        for point in self.snapshots:
            if trainer.is_global_zero and hit(point, trainer, batch_idx):
                shutil.copyfile(self.out / "checkpoints" / "last.ckpt",
                                self.out / f"at-{name(point)}.ckpt")
        if self.kill and hit(self.kill, trainer, batch_idx):
            os.kill(os.getpid(), signal.SIGKILL)


def run_leg(leg: dict) -> None:
    from galclip.train.runner import train

    out = Path(leg["out"])
    os.environ.update(leg.get("env", {}))
    train(leg["stage"], leg["data"], out, leg["config"], leg["overrides"],
          callbacks=[Points(out, leg.get("kill"), leg.get("snapshots", []))])


def fork_leg(leg: dict) -> int:
    """Run ``leg`` in a forked child; its exit status (negative: the signal that ended it)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            run_leg(leg)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    print(f"{leg['stage']} kill={leg.get('kill')}: exit {code}, {usage.ru_utime + usage.ru_stime:.1f} s CPU",
          file=sys.stderr, flush=True)
    last = Path(leg["out"]) / "checkpoints" / "last.ckpt"
    if code == -signal.SIGKILL and last.is_file() and os.environ.get("RANK", "0") == "0":
        shutil.copyfile(last, Path(leg["out"]) / f"killed-{name(leg['kill'])}.ckpt")
    return code


def main(plan_file: str) -> None:
    # what the legs import, imported once before any fork
    import omegaconf  # noqa: F401
    import pandas  # noqa: F401
    import timm  # noqa: F401

    import galclip.train.align  # noqa: F401
    import galclip.train.pretrain  # noqa: F401

    plan = json.loads(Path(plan_file).read_text())
    codes = [fork_leg(leg) for leg in plan["legs"]]
    Path(plan["result"]).write_text(json.dumps(codes))


# ----------------------------------------------------------------------------- what legs left
def tensors(obj, path: str = "") -> dict:
    """Every tensor in a (nested) checkpoint, by its path."""
    import torch

    if isinstance(obj, torch.Tensor):
        return {path: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    return {k: v for key, value in items for k, v in tensors(value, f"{path}/{key}").items()}


def assert_same(a: dict, b: dict) -> None:
    """Two dicts of tensors hold the same names and bit-identical tensors."""
    import torch

    assert a.keys() == b.keys()
    differ = [k for k in a if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path, weights_only=False)


if __name__ == "__main__":
    main(sys.argv[1])
