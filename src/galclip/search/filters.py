"""Metadata filters for search: ``"redshift > 0.3 and log_mstar >= 10"``.

A small, safe grammar (nothing is evaluated as code, so it is fit for web requests): clauses
``COLUMN OP VALUE`` joined by ``and``, with OP one of ``< <= > >= == !=`` and VALUE a number,
``true``/``false``, or a quoted string; a range ``0.1 < redshift < 0.3`` is also accepted.

Parsing is one left-to-right pass of a tokenizer whose patterns cannot backtrack more than a
token, so time is linear in the length, which is capped at :data:`MAX_WHERE_CHARS` (a web
request must never hold the server: a regex over the whole clause took 37 s on 40 kB).
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
MAX_WHERE_CHARS = 2000
_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<op><=|>=|==|!=|<|>|=)
  | (?P<amp>&&|&)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_WORDS = {"and": "and", "AND": "and", "true": "value", "false": "value", "True": "value",
          "False": "value"}
_KINDS = {"num": "value", "str": "value", "op": "op", "amp": "and"}


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


def _tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: 'value', 'op', 'name' or 'and'."""
    out, pos, end = [], 0, len(expr.rstrip())
    while pos < end:
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise FilterError(f"--where: cannot parse {expr[pos:pos + 40]!r} at character {pos}; "
                              "write clauses such as 'redshift > 0.3' joined by 'and'")
        text = m.group(m.lastgroup)
        kind = _WORDS.get(text, "name") if m.lastgroup == "word" else _KINDS[m.lastgroup]
        out.append((kind, text))
        pos = m.end()
    return out


def _clauses(group: list[tuple[str, str]]) -> list[Clause]:
    kinds = [k for k, _ in group]
    texts = [t for _, t in group]
    if kinds == ["name", "op", "value"]:
        return [Clause(texts[0], texts[1], _literal(texts[2]))]
    if kinds == ["value", "op", "name", "op", "value"]:
        return [Clause(texts[2], FLIP[texts[1]], _literal(texts[0])),
                Clause(texts[2], texts[3], _literal(texts[4]))]
    raise FilterError(f"--where: cannot parse {' '.join(texts)!r}; write clauses such as "
                      f"'redshift > 0.3' joined by 'and'")


def parse_where(expr: str | None, columns: Mapping[str, Any] | None = None) -> list[Clause]:
    """Parse a filter expression into clauses, checking column names against ``columns``."""
    if expr is None or not expr.strip():
        return []
    if len(expr) > MAX_WHERE_CHARS:
        raise FilterError(f"--where: {len(expr)} characters, limit {MAX_WHERE_CHARS}")
    groups: list[list[tuple[str, str]]] = [[]]
    for tok in _tokens(expr):
        if tok[0] == "and":
            groups.append([])
        else:
            groups[-1].append(tok)
    clauses = [c for g in groups for c in _clauses(g)]
    for c in clauses:
        if columns is not None and c.column not in columns:
            raise FilterError(f"--where: unknown column {c.column!r}; filterable columns: "
                              f"{', '.join(sorted(columns))}")
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
