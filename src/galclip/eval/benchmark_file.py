"""Reading a benchmark's JSON file into the evaluation report: the checks every such file gets.

``galclip evaluate`` shows figures that a benchmark script measured for the evaluated model
(``--injection``: planted anomalies; ``--real-spectra``: real DESI spectra). The file must exist,
be JSON and have been made with the same model (its ``model_sha256``); each caller then checks
its own fields. Errors name the file and the field.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_benchmark_json(path: str | Path, option: str, writer: str, model_sha256: str,
                        remedy: str) -> tuple[Path, dict[str, Any]]:
    """(path, object) of a benchmark's JSON file made with the model ``model_sha256``.
    ``option`` (e.g. ``--injection``) and ``writer`` (what writes the file) go into the message
    when it is missing; ``remedy`` into the message when it was made with another model.
    Raises FileNotFoundError or ValueError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path}: no such file ({writer} writes it)")
    try:
        obj = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a JSON object: not a file of {writer}")
    theirs = obj.get("model_sha256")
    if theirs != model_sha256:
        raise ValueError(f"{path}: field 'model_sha256' is {str(theirs)[:12]}..., but the "
                         f"evaluated model is {model_sha256[:12]}...: {remedy}")
    return path, obj
