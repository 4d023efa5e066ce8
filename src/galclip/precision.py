"""The precision policy of training: bf16 autocast where the hardware computes in bf16 natively, fp32
elsewhere.

``auto`` (the default of every training stage and of the supervised baselines) means bf16 mixed
precision (Micikevicius et al. 2018, with bfloat16: weights, optimizer state and reductions stay
fp32, matrix products and convolutions run in bf16 under ``torch.autocast``) on a GPU that supports
bf16 and on a CPU with bf16 instructions (AVX512-BF16 or AMX: Intel Cooper Lake / Sapphire Rapids
and later, AMD Zen 4 and later), and fp32 everywhere else, where bf16 would be emulated and slower.
On the 2-core AMD EPYC (Zen 4) of the benchmarks it makes a training step of the CPU encoders 1.7x
faster (benchmarks/RESULTS.md). The price: the same command gives figures that differ, within the
run-to-run spread, between a machine that has bf16 and one that has not. ``32-true`` (or
``bf16-mixed``) fixes the choice, e.g. to reproduce a run bit for bit on another machine. Inference
(embedding a survey) stays fp32 on the CPU (:func:`galclip.models.inference.autocast`).
"""
from __future__ import annotations

import contextlib
from typing import Any

#: the settings a training stage accepts (Lightning's names; "auto" is resolved here)
CHOICES = ("auto", "32-true", "bf16-mixed")


def native_bf16(device: Any = "cpu") -> bool:
    """Whether ``device`` ("cpu", "cuda", a torch.device) computes in bf16 natively."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve(setting: str, device: Any = "cpu") -> str:
    """``auto`` -> ``bf16-mixed`` where :func:`native_bf16`, else ``32-true``; other settings
    are returned as given (ValueError for one this policy does not know)."""
    setting = str(setting)
    if setting not in CHOICES:
        raise ValueError(f"precision {setting!r}: choose one of {', '.join(CHOICES)}")
    if setting != "auto":
        return setting
    return "bf16-mixed" if native_bf16(device) else "32-true"


def autocast(setting: str, device: Any = "cpu"):
    """The context a training step runs in: bf16 autocast for ``bf16-mixed``, else nothing."""
    import torch

    if resolve(setting, device) != "bf16-mixed":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
