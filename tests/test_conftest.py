"""The suite's own set-up (conftest.py): threads per pytest-xdist worker, heavy files first."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import conftest

VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@pytest.mark.parametrize(("workers", "cores", "expected"),
                         [("2", 2, "1"), ("2", 8, "4"), ("3", 2, "1"), ("1", 2, None), (None, 2, None)])
def test_each_worker_gets_its_share_of_the_cores(monkeypatch, workers, cores, expected):
    for var in (*VARS, "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(var, raising=False)
    if workers:
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", workers)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    conftest.threads_per_worker()
    assert [os.environ.get(v) for v in VARS] == [expected] * 3


def test_a_thread_count_the_caller_chose_is_kept(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    conftest.threads_per_worker()
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_heavy_files_come_first_and_each_file_keeps_its_order():
    def item(name: str, test: str):
        return SimpleNamespace(path=Path("tests") / name, name=test)

    items = [item("test_a.py", "1"), item("test_sim.py", "1"), item("test_a.py", "2"),
             item("test_tiny_demo.py", "1"), item("test_sim.py", "2"), item("test_b.py", "1")]
    conftest.pytest_collection_modifyitems(items)
    assert [(i.path.name, i.name) for i in items] == [
        ("test_tiny_demo.py", "1"), ("test_sim.py", "1"), ("test_sim.py", "2"),
        ("test_a.py", "1"), ("test_a.py", "2"), ("test_b.py", "1")]


def test_every_heavy_file_exists():
    here = Path(__file__).parent
    assert [n for n in conftest.HEAVY_FIRST if not (here / n).is_file()] == []
