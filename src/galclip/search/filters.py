"""Metadata filters for search: ``"redshift > 0.3 and log_mstar >= 10"``.

A small, safe grammar (nothing is evaluated as code, so it is fit for web requests): clauses
``COLUMN OP VALUE`` joined by ``and``, with OP one of ``< <= > >= == !=`` and VALUE a number,
``true``/``false``, or a quoted string; a range ``0.1 < redshift < 0.3`` is also accepted.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "==": operator.eq, "=": operator.eq, "!=": operator.ne}
FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "=": "==", "!=": "!="}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VALUE = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|'[^']*'|\"[^\"]*\"|true|false|True|False"
_OP = r"<=|>=|==|!=|<|>|="
_CLAUSE = re.compile(rf"^\s*(?:({_VALUE})\s*({_OP})\s*)?({_NAME})\s*({_OP})\s*({_VALUE})\s*$")


class FilterError(ValueError):
    """A ``--where`` expression could not be parsed or names an unknown column."""


@dataclass(frozen=True)
class Clause:
    column: str
    op: str
    value: Any

    def mask(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.asarray(OPS[self.op](values, self.value), dtype=bool)


def _literal(text: str) -> Any:
    if text[0] in "'\"":
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return float(text)


def parse_where(expr: str | None, columns: Mapping[str, Any] | None = None) -> list[Clause]:
    """Parse a filter expression into clauses, checking column names against ``columns``."""
    if expr is None or not expr.strip():
        return []
    clauses = []
    for part in re.split(r"\s+(?:and|AND)\s+|\s*&&?\s*", expr.strip()):
        m = _CLAUSE.match(part)
        if not m:
            raise FilterError(f"--where: cannot parse {part!r}; write clauses such as "
                              f"'redshift > 0.3' joined by 'and'")
        lo, lo_op, name, op, value = m.groups()
        if columns is not None and name not in columns:
            raise FilterError(f"--where: unknown column {name!r}; filterable columns: "
                              f"{', '.join(sorted(columns))}")
        if lo is not None:
            clauses.append(Clause(name, FLIP[lo_op], _literal(lo)))
        clauses.append(Clause(name, op, _literal(value)))
    return clauses


def apply_where(clauses: list[Clause], table: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Boolean row mask (n,) of rows satisfying every clause (a NaN never satisfies one)."""
    mask = np.ones(n, dtype=bool)
    for c in clauses:
        values = table[c.column]
        if isinstance(c.value, str) != (values.dtype.kind in "OUS"):
            raise FilterError(f"--where: column {c.column!r} holds {values.dtype} values; "
                              f"cannot compare with {c.value!r}")
        mask &= c.mask(values)
    return mask
