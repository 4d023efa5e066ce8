"""Processes: pool workers die with their parent, killed writers' temporary files are cleaned
on the next run, and rerunning a finished build is a no-op."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from galclip.data.format import remove_stale_temporaries

PARENT = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time
    sys.path.insert(0, {src!r})
    from galclip.sim.survey import die_with_parent

    def init(parent):
        die_with_parent(parent)

    def work(_):
        time.sleep(120)

    if __name__ == "__main__":
        pool = mp.get_context("spawn").Pool(2, initializer=init, initargs=(os.getpid(),))
        pool.map_async(work, range(2))
        time.sleep(0.5)
        print(" ".join(str(p.pid) for p in pool._pool), flush=True)
        time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:            # a zombie has finished
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc")
def test_pool_workers_die_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(src=str(Path(__file__).parents[1] / "src")))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "orphaned pool workers still running"


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / ".part-00001.parquet.tmp-999999999"
    mine = tmp_path / f".manifest.json.tmp-{os.getpid()}"
    live = tmp_path / f".part-00002.parquet.tmp-{os.getppid()}"       # a running writer
    keep = tmp_path / "part-00000.parquet"
    for f in (dead, mine, live, keep):
        f.write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([dead, mine])
    assert live.exists() and keep.exists()


def test_rerun_of_a_finished_build_is_a_no_op_and_cleans_up(real_data, tmp_path, capsys):
    from galclip.cli import main
    from galclip.data.build import STATE

    d = real_data / "desi"
    argv = ["build-dataset", "--spectra", str(d / "coadd-4-80613-thru20210324.fits"),
            "--redshifts", str(d / "redrock-4-80613-thru20210324.fits"), "--keep-unpaired",
            "--out", str(tmp_path / "ds"), "--no-progress"]
    assert main(argv) == 0
    manifest = (tmp_path / "ds" / "manifest.json").read_bytes()
    # killed after the manifest was written: the state file and a temporary are left behind
    (tmp_path / "ds" / STATE).write_text("{}")
    (tmp_path / "ds" / ".part-00001.parquet.tmp-999999999").write_text("partial")
    capsys.readouterr()
    assert main(argv) == 0 and "1 rows written" in capsys.readouterr().out
    assert (tmp_path / "ds" / "manifest.json").read_bytes() == manifest
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [
        "manifest.json", "part-00000.parquet", "rejects.csv"]
    assert main(argv[:-3] + ["--match-radius", "2", "--out", str(tmp_path / "ds")]) == 2
    assert "other inputs or options" in capsys.readouterr().err
