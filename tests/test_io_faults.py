"""I/O faults end in one clean line (exit 2) that names the path and says what to do, leave
nothing partial, and the rerun resumes: a full disk (pyarrow's own ``OSError``), a read-only
folder, a forbidden one, an input that vanished. Tests run as root, which ``chmod`` does not
stop, so the faults are raised where the writer calls the OS."""
from __future__ import annotations

import errno
import json
import re

import pytest

from galclip import storage

SIM = ["simulate", "--n", "12", "--shard-size", "4", "--workers", "1", "--no-progress"]


def failing_after(n: int, exc: OSError, real):
    calls = []

    def write(*args, **kwargs):
        calls.append(1)
        if len(calls) > n:
            raise exc
        return real(*args, **kwargs)
    return write


def shards(folder):
    return [(s["file"], s["sha256"]) for s in json.loads((folder / "manifest.json").read_text())["shards"]]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    from galclip.cli import main

    out = tmp_path_factory.mktemp("sim") / "whole"
    assert main([*SIM, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_rerun_resumes(whole, tmp_path, monkeypatch, capsys):
    from galclip.cli import main

    out = tmp_path / "sim"
    # what pyarrow raises on a full disk: an OSError with the errno in its text only
    full = OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")
    monkeypatch.setattr(storage.pq, "write_table", failing_after(1, full, storage.pq.write_table))
    assert main([*SIM, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "Traceback" not in err
    assert "no space left" in err and "rerun the same command" in err
    # the space the shard needs (its size in memory: about its size on disk), and what is free
    need = re.search(r"\(needs about ([\d.]+) MB, [\d.]+ [kMG]B free on /[^)]*\)", err)
    on_disk = json.loads((whole / "manifest.json").read_text())["shards"][1]["bytes"] / 1e6
    assert need and on_disk / 2 < float(need.group(1)) < on_disk * 2, (err, on_disk)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]           # nothing partial
    assert not (out / "manifest.json").exists()
    monkeypatch.undo()
    assert main([*SIM, "--out", str(out)]) == 0                          # space freed: resumes
    assert shards(out) == shards(whole)


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")])
def test_a_read_only_or_forbidden_folder_is_one_line(code, words, tmp_path, monkeypatch, capsys):
    import os

    from galclip.cli import main

    out = tmp_path / "sim"

    def refuse(src, dst):
        raise OSError(code, os.strerror(code), str(dst))
    monkeypatch.setattr(storage.os, "replace", refuse)
    assert main([*SIM, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and str(out) in err
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_the_writer_names_the_target_of_an_error_without_a_path(tmp_path):
    with pytest.raises(OSError) as info, storage.atomic_write(tmp_path / "x.json") as tmp:
        tmp.write_text("{}")
        raise OSError("IOError: [Errno 28] No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_a_vanished_input_is_one_line(whole, tmp_path, capsys):
    import shutil

    from galclip.cli import main

    data = tmp_path / "data"
    shutil.copytree(whole, data)
    (data / shards(whole)[1][0]).unlink()
    assert main(["validate", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and shards(whole)[1][0] in err


def test_a_full_disk_under_a_checkpoint_or_weights_says_the_space_needed(tmp_path, monkeypatch):
    """torch.save drops the errno of its failed write (a RuntimeError) and safetensors keeps it
    in its text only: both leave as the full disk's OSError, with the space needed and free."""
    import shutil

    import torch

    from galclip.models import checkpoint
    from galclip.train import resumable

    state = {"state_dict": {"w": torch.zeros(250_000)}, "optimizer_states": [{"m": torch.zeros(250_000)}]}
    assert resumable.tensor_bytes(state) == 2_000_000

    def torch_full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(resumable.torch, "save", torch_full)
    Usage = type(shutil.disk_usage(tmp_path))
    monkeypatch.setattr(resumable.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 500, 500))
    with pytest.raises(OSError) as info:
        resumable.AtomicCheckpointIO().save_checkpoint(state, tmp_path / "last.ckpt")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "last.ckpt")
    assert re.fullmatch(r"needs about 2\.0 MB, [\d.]+ [kMG]B free on /.*", info.value.space)

    def safetensors_full(*args, **kwargs):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr("safetensors.torch.save_file", safetensors_full)
    with pytest.raises(OSError) as info:
        checkpoint.write_safetensors(tmp_path / "w.safetensors", torch.nn.Linear(1000, 1000), {})
    assert info.value.errno == errno.ENOSPC and "needs about 4.0 MB" in info.value.space
    assert list(tmp_path.iterdir()) == []                                  # nothing partial


def test_a_full_disk_line_says_what_is_needed_and_free():
    from galclip.cli import os_error_message

    e = OSError(errno.ENOSPC, "No space left on device", "/data/run/shard-00003.parquet")
    e.space = "needs about 12.0 MB, 0.4 MB free on /data"
    assert os_error_message(e) == (
        "/data/run/shard-00003.parquet: no space left on the device (needs about 12.0 MB, "
        "0.4 MB free on /data): free some space (or write elsewhere) and rerun the same command; "
        "it resumes where it stopped")


def test_the_space_free_is_what_was_free_when_the_write_began(tmp_path, monkeypatch):
    """A writer that fails may keep its deleted temporary open (its blocks not yet freed): the
    line reports the space free before the file was begun, and sizes in fitting units."""
    free = iter([30_000, 0])                         # at the start; after the failed write
    monkeypatch.setattr(storage, "free_bytes", lambda folder: next(free))
    with pytest.raises(OSError) as info, storage.atomic_write(tmp_path / "emb.parquet", size=12_000) as tmp:
        tmp.write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.space == f"needs about 12 kB, 30 kB free on {storage.mount_point(tmp_path)}"
    assert storage.human_bytes(3.2e9) == "3.2 GB" and storage.human_bytes(4e6) == "4.0 MB"


def test_an_input_gone_mid_run_names_its_path_and_the_remedy(tmp_path, monkeypatch, capsys):
    """pyarrow's error for a file that vanished names it only inside its text, without a remedy."""
    import pyarrow.parquet as pq

    from galclip import cli
    from galclip.cli import validate

    gone = tmp_path / "part-00001.parquet"
    with pytest.raises(FileNotFoundError) as info:
        pq.ParquetFile(gone)

    def run(args):
        raise info.value

    monkeypatch.setattr(validate, "run", run)
    assert cli.main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"galclip validate: error: {gone}: no such file") and "rerun" in err
    assert "Detail" not in err
