"""Argument types for the ``galclip`` commands: ranges, finiteness, choices and devices are
checked when the command line is parsed, so a bad value exits with status 2 and a message that
names the option (argparse adds ``argument --NAME:``), never a traceback later on.

    p.add_argument("--batch-size", type=int_range(1), default=64)
    p.add_argument("--match-radius", type=float_range(0, inclusive_lo=False), default=1.0)
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (either bound optional)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            what = "a positive integer" if (lo, hi) == (1, None) else \
                f"an integer in {_span(lo, hi)}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def float_range(lo: float | None = None, hi: float | None = None, *, inclusive_lo: bool = True,
                inclusive_hi: bool = True) -> Callable[[str], float]:
    """A finite float within the bounds (NaN and inf are refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        below = lo is not None and (value < lo if inclusive_lo else value <= lo)
        above = hi is not None and (value > hi if inclusive_hi else value >= hi)
        if below or above:
            raise argparse.ArgumentTypeError(
                f"must be in {_span(lo, hi, inclusive_lo, inclusive_hi)}, got {value:g}")
        return value
    parse.__name__ = "number"
    return parse


def _span(lo, hi, inclusive_lo: bool = True, inclusive_hi: bool = True) -> str:
    left = "-inf" if lo is None else f"{lo:g}"
    right = "inf" if hi is None else f"{hi:g}"
    return f"{'[' if inclusive_lo and lo is not None else '('}{left}, {right}" \
           f"{']' if inclusive_hi and hi is not None else ')'}"


def csv_choices(choices: Iterable[str]) -> Callable[[str], list[str]]:
    """A comma-separated list whose items are all in ``choices`` (at least one)."""
    allowed = tuple(choices)

    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose one or more of "
                                             f"{', '.join(allowed)} (comma-separated)")
        return items
    parse.__name__ = "list"
    return parse


def device(text: str) -> str:
    """A torch device that exists here: cpu, cuda, cuda:N (N < the number of GPUs), mps."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda, cuda:1, ...)"
                                         ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count()
        if n == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is available here; use cpu")
        if dev.index is not None and dev.index >= n:
            raise argparse.ArgumentTypeError(f"{text!r}: only {n} CUDA device(s) here")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda or cuda:N")
    return text


def new_dir(text: str) -> str:
    """An output folder: may exist, but must not be a file."""
    from pathlib import Path

    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder")
    return text


def check_columns(text: str, available: list[str], option: str = "--columns") -> list[str]:
    """The comma-separated column names of ``text``, each one of ``available`` (a ValueError
    naming the option otherwise: the columns are known only once the catalog is open)."""
    items = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in items if c not in available]
    if bad or not items:
        raise ValueError(f"argument {option}: unknown column(s) {bad or text!r}; the catalog has "
                         f"{', '.join(available)}")
    return items


port = int_range(0, 65535)
positive_int = int_range(1)
