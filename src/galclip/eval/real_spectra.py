"""Real spectra through a simulation-trained model, in the evaluation report, read from the file
the sim-to-real benchmark writes.

``benchmarks/sim_to_real.py --json FILE`` gives real DESI spectra with known redshifts to a
model's catalog of simulated galaxies: each spectrum's redshift is the median of its nearest
simulated spectra in the embedding, and its OOD score says whether it looks unfamiliar. Per
sample (DESI programme, pipeline coadds, all, inside the simulated redshift range) it writes how
many are read within 0.01 (1 + z), how many catastrophically (> 0.15), how many are flagged
unfamiliar and how many are wrong without a flag. Real spectra are not part of a simulated
survey, so ``galclip evaluate`` does not read any: with ``--real-spectra FILE`` it reads that
file (refused unless it was made with the evaluated model), and the report shows its table and
says in one sentence how the model fares on real spectra.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIELDS = ("n", "within_0.01", "catastrophic", "unfamiliar", "wrong_unflagged")
IN_RANGE = "in sim range"


def read_real_spectra(path: str | Path, model_sha256: str) -> dict[str, Any]:
    """The benchmark's summary, checked: JSON with ``model_sha256`` equal to ``model_sha256``
    and a ``summary`` list of samples, each with its counts. Raises ValueError (or
    FileNotFoundError) naming the file and the field."""
    from galclip.eval.benchmark_file import read_benchmark_json
    from galclip.storage import sha256_file

    path, obj = read_benchmark_json(
        path, "--real-spectra", "benchmarks/sim_to_real.py --json FILE", model_sha256,
        "run benchmarks/sim_to_real.py on a catalog embedded with the same model")
    rows = obj.get("summary")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: field 'summary' missing or empty: not a file of "
                         f"benchmarks/sim_to_real.py --json")
    theirs = obj["model_sha256"]
    for i, row in enumerate(rows):
        _check_row(path, i, row)
    return {"file": str(path.resolve()), "sha256": sha256_file(path), "model_sha256": theirs,
            "k": obj.get("k"), "catalog": obj.get("catalog"), "summary": rows}


def _check_row(path: Path, i: int, row: Any) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("sample"), str):
        raise ValueError(f"{path}: field 'summary[{i}].sample' missing or not a string")
    for f in FIELDS:
        if not isinstance(row.get(f), int) or row[f] < 0:
            raise ValueError(f"{path}: field 'summary[{i}].{f}' missing or not a count")
    if row["within_0.01"] > row["n"] or row["unfamiliar"] > row["n"]:
        raise ValueError(f"{path}: field 'summary[{i}]': counts larger than n {row['n']}")


def table(real: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per sample) of the report's table; no rows without a file."""
    head = ["sample", "n", "within 0.01(1+z)", "catastrophic (> 0.15)", "flagged unfamiliar",
            "wrong and not flagged"]
    rows = [[r["sample"], *(str(r[f]) for f in FIELDS)] for r in real.get("summary") or []]
    return head, rows


def finding(real: Mapping[str, Any]) -> str | None:
    """The report's one sentence on real spectra (the samples inside the simulated redshift
    range, else all of them); None without a file."""
    rows = {r["sample"]: r for r in real.get("summary") or []}
    row = rows.get(IN_RANGE) or rows.get("all")
    if row is None or not row["n"]:
        return None
    where = "inside the simulated redshift range" if row["sample"] == IN_RANGE else "in all"
    k = f"the median of its {real['k']} nearest" if real.get("k") else "its nearest"
    return (f"Real spectra: of {row['n']} real DESI spectra {where}, the model trained on the "
            f"simulation reads {row['within_0.01']} within 0.01(1+z) ({k} simulated spectra), "
            f"flags {row['unfamiliar']} as unfamiliar and gives {row['wrong_unflagged']} a wrong "
            f"redshift without a flag (benchmarks/sim_to_real.py; table below).")
