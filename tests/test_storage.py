"""The one storage layer (galclip.storage) and the one resume state (galclip.resume)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from galclip import storage
from galclip.resume import ResumeState, StateChanged


def _shards(root, sizes=(5, 7, 3), group=2):
    """Shards of one int column ``i`` (= the global row number), ``group`` rows per row group."""
    entries, start = [], 0
    for k, n in enumerate(sizes):
        table = pa.table({"i": np.arange(start, start + n, dtype=np.int64)})
        entries.append(storage.write_parquet(root / f"s/p{k}.parquet", table, group, root))
        start += n
    return entries


def test_atomic_write_replaces_on_success_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), storage.atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    with storage.atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_shard_entries_and_row_range_reads(tmp_path, monkeypatch):
    entries = _shards(tmp_path)
    assert [e["file"] for e in entries] == ["s/p0.parquet", "s/p1.parquet", "s/p2.parquet"]
    assert [e["n_rows"] for e in entries] == [5, 7, 3]
    assert entries[1] == storage.shard_entry(tmp_path / "s/p1.parquet", tmp_path)
    assert storage.read_rows(tmp_path, entries, ["i"]).column("i").to_pylist() == list(range(15))
    got = [t.column("i").to_pylist() for t in storage.iter_row_groups(tmp_path, entries, ["i"], 4, 9)]
    assert got == [[4], [5, 6], [7, 8]]          # one table per row group touched, in order
    reads = []
    real = pa.parquet.ParquetFile.read_row_group
    monkeypatch.setattr(pa.parquet.ParquetFile, "read_row_group",
                        lambda self, g, **kw: reads.append(g) or real(self, g, **kw))
    rows = np.array([0, 6, 13])
    assert storage.take_rows(tmp_path, entries, ["i"], rows).column("i").to_pylist() == [0, 6, 13]
    assert len(reads) == 3                         # only the groups holding those rows
    with pytest.raises(ValueError, match="increasing"):
        storage.take_rows(tmp_path, entries, ["i"], np.array([3, 1]))
    with pytest.raises(storage.StorageError, match="beyond its 15 rows"):
        storage.take_rows(tmp_path, entries, ["i"], np.array([14, 15]))


def test_fingerprint_is_read_from_the_manifest_and_follows_content(tmp_path):
    a = _shards(tmp_path / "a")
    b = _shards(tmp_path / "b")
    assert storage.fingerprint(a) == storage.fingerprint(b)  # same bytes, same identity
    table = pa.table({"i": np.arange(3, dtype=np.int64) + 100})
    b[2] = storage.write_parquet(tmp_path / "b/s/p2.parquet", table, 2, tmp_path / "b")
    assert storage.fingerprint(a) != storage.fingerprint(b)


def test_base_manifest_refuses_no_shards(tmp_path):
    with pytest.raises(storage.StorageError, match="no shards"):
        storage.base_manifest("x", 1, tmp_path, [])
    m = storage.base_manifest("x", 1, tmp_path, _shards(tmp_path))
    assert m["n_rows"] == 15 and m["columns"] == {"i": {"dtype": "int64", "shape": []}}


@pytest.mark.slow
def test_opening_a_dataset_checks_sizes_but_never_hashes(tiny_dataset, monkeypatch):
    from galclip.data import DatasetError, open_dataset, validate_dataset

    calls = []
    real = storage.sha256_file
    monkeypatch.setattr(storage, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    ds = open_dataset(tiny_dataset)
    assert len(ds) == 120 and calls == []                    # cheap: footers and sizes only
    open_dataset(tiny_dataset, verify=True)                  # on request: every shard hashed
    assert len(calls) == 3
    validate_dataset(tiny_dataset)                           # galclip validate hashes by default
    assert len(calls) == 6
    shard = tiny_dataset / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])             # truncated: caught without hashing
    with pytest.raises(DatasetError, match="part-00001.parquet: holds .* bytes, manifest says"):
        open_dataset(tiny_dataset)


# ----------------------------------------------------------------------------- resume state
def test_resume_state_keeps_progress_for_the_same_inputs(tmp_path):
    path = tmp_path / ".state.json"
    s = ResumeState.open(path, "stage", {"config": {"seed": 1, "n": (4, 5)}})
    assert not s.complete and s.progress == {} and not path.exists()  # nothing written yet
    s.progress["shards"] = [0, 1]
    s.save()
    again = ResumeState.open(path, "stage", {"config": {"seed": 1, "n": [4, 5]}})
    assert again.progress == {"shards": [0, 1]} and not again.complete
    again.mark_complete({"rows": 9})
    done = ResumeState.open(path, "stage", {"config": {"seed": 1, "n": [4, 5]}})
    assert done.complete and done.result == {"rows": 9}
    assert json.loads(path.read_text())["inputs"] == {"config": {"seed": 1, "n": [4, 5]}}


def test_resume_state_refuses_restarts_or_allows_changed_inputs(tmp_path):
    path = tmp_path / ".state.json"
    s = ResumeState.open(path, "galclip thing", {"config": {"seed": 1, "epochs": 2}, "data": "x"})
    s.progress["step"] = 10
    s.save()
    with pytest.raises(StateChanged, match=r"galclip thing run started with other inputs or options "
                                           r"\(changed: config.seed\); use another folder"):
        ResumeState.open(path, "galclip thing", {"config": {"seed": 2, "epochs": 2}, "data": "x"},
                         hint="use another folder")
    with pytest.raises(KeyError):                       # the stage's own error class
        ResumeState.open(path, "t", {"data": "y", "config": {"seed": 1, "epochs": 2}}, error=KeyError)
    fresh = ResumeState.open(path, "t", {"config": {"seed": 2, "epochs": 2}, "data": "x"},
                             on_change="restart")
    assert fresh.progress == {} and not fresh.complete
    extended = ResumeState.open(path, "t", {"config": {"seed": 1, "epochs": 5}, "data": "x"},
                                allow=("config.epochs",))
    assert extended.progress == {"step": 10} and extended.inputs["config"]["epochs"] == 5
    with pytest.raises(ValueError, match="on_change"):
        ResumeState.open(path, "t", {}, on_change="ignore")


def test_unreadable_or_foreign_state_never_matches(tmp_path):
    path = tmp_path / ".state.json"
    for text in ("{not json", json.dumps({"fingerprint": "old format"}), "[1, 2]"):
        path.write_text(text)
        with pytest.raises(StateChanged, match="changed: fingerprint"):
            ResumeState.open(path, "t", {"fingerprint": "abc"})
    s = ResumeState.open(path, "t", {"fingerprint": "abc"}, on_change="restart")
    s.mark_complete()
    s.clear()
    assert not path.exists() and not s.complete
