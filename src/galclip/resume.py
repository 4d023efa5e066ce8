"""One resume state for every stage that can be killed and rerun.

A stage keeps a small JSON file in its output folder that says what the run belongs to (its
*inputs*: the resolved config, fingerprints of the files and datasets it reads), how far it got
(*progress*) and whether it finished (*complete*, with a small *result*). Rerunning the stage:

- with unchanged inputs after it finished: a no-op (``state.complete`` is true; return early);
- with unchanged inputs after a kill: continue from ``state.progress``;
- with changed inputs: ``on_change="refuse"`` raises, naming the keys that changed (the stage
  says how to start again: another folder, ``--overwrite``); ``"restart"`` starts a fresh state;
  keys listed in ``allow`` may change without either (e.g. a larger epoch budget that extends a
  training run); the new values are recorded.

Every save is atomic (:func:`galclip.storage.write_json_atomic`), so a kill never leaves half a
state file. Typical use (simulate, build-dataset, embed, index, evaluate and the demo do this)::

    state = ResumeState.open(out / ".embed-state.json", "embed", inputs=plan, on_change="refuse",
                             hint="use --overwrite to start again")
    if state.complete:
        return state.result                         # nothing to do
    for shard in todo:
        ...
        state.progress["shards"] = finished         # what a rerun may keep
        state.save()
    state.mark_complete({"n_rows": n})

A training runner adopts it the same way: ``inputs`` = the resolved config minus the keys a
resume may change, ``allow=("trainer.max_epochs",)`` to let a run be extended, progress = the
last checkpoint's path and step.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galclip.storage import write_json_atomic

ON_CHANGE = ("refuse", "restart")


class StateChanged(FileExistsError):
    """A stage's folder holds a run with other inputs; the message names the keys and the fix."""


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    if not isinstance(obj, Mapping) or (prefix and not obj):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in obj.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two input declarations (JSON-normalised)."""
    a, b = flatten(_jsonable(old)), flatten(_jsonable(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def _jsonable(obj: Any) -> Any:
    """What ``obj`` reads back as after a JSON round trip (tuples become lists, ...)."""
    from galclip.storage import _json_default

    return json.loads(json.dumps(obj, default=_json_default))


@dataclass
class ResumeState:
    """The resume state of one stage run (see the module docstring)."""

    path: Path
    stage: str
    inputs: dict[str, Any]
    progress: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    result: Any = None

    @classmethod
    def open(cls, path: str | Path, stage: str, inputs: Mapping[str, Any], *,
             on_change: str = "refuse", allow: Iterable[str] = (), hint: str = "",
             error: type[Exception] = StateChanged) -> ResumeState:
        """The state at ``path`` if it belongs to ``inputs``, else a fresh one (``restart``) or
        ``error`` (``refuse``). Nothing is written until :meth:`save`."""
        if on_change not in ON_CHANGE:
            raise ValueError(f"on_change must be one of {ON_CHANGE}, got {on_change!r}")
        path, inputs = Path(path), _jsonable(dict(inputs))
        old = cls._read(path)
        if old is None:
            return cls(path, stage, inputs)
        diff = [k for k in changed_keys(old.get("inputs", {}), inputs)
                if not any(k == a or k.startswith(f"{a}.") for a in allow)]
        if diff and on_change == "refuse":
            raise error(f"{path.parent}: holds a {old.get('stage', stage)} run started with other "
                        f"inputs or options (changed: {', '.join(diff[:8])}){'; ' + hint if hint else ''}")
        if diff:
            return cls(path, stage, inputs)
        return cls(path, stage, inputs, dict(old.get("progress") or {}),
                   bool(old.get("complete")), old.get("result"))

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        """The saved state, or None when there is none; an unreadable file is an empty state
        (it declares no inputs, so it never matches)."""
        if not path.exists():
            return None
        try:
            saved = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return saved if isinstance(saved, dict) else {}

    def save(self) -> None:
        """Write the state atomically (the folder must exist)."""
        write_json_atomic(self.path, {"stage": self.stage, "inputs": self.inputs,
                                      "progress": self.progress, "complete": self.complete,
                                      "result": self.result})

    def mark_complete(self, result: Any = None) -> None:
        """Record that the run finished (with a small JSON ``result``) and save."""
        self.complete, self.result = True, result
        self.save()

    def clear(self) -> None:
        """Forget the run: delete the state file (a stage whose output records completion)."""
        self.path.unlink(missing_ok=True)
        self.progress, self.complete, self.result = {}, False, None
