"""Shared test fixtures: small datasets written by the tests themselves."""
from __future__ import annotations

import os


def threads_per_worker() -> None:
    """Under ``pytest -n N`` each worker (and the processes its tests start) gets the cores
    divided by N as its OpenMP/MKL threads (at least one) unless the caller chose: with torch's
    default of one thread per core, two workers on two cores run four spinning threads, and a
    set of training tests took 257 CPU s instead of 40 (benchmarks/RESULTS.md). Runs before
    numpy and torch are imported, which read these once."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))


threads_per_worker()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def random_rows(n: int, seed: int = 0, start_id: int = 0) -> dict[str, np.ndarray]:
    """Rows in the dataset format with random content (for format/IO tests only)."""
    from galclip import conventions as C

    rng = np.random.default_rng(seed)
    return {
        "object_id": np.arange(start_id, start_id + n, dtype=np.int64),
        "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 10, n),
        "redshift": rng.uniform(0.01, 0.6, n).astype(np.float32),
        "image": rng.normal(size=(n, *C.IMAGE_SHAPE)).astype(np.float32),
        "spectrum_flux": rng.normal(size=(n, C.N_WAVE)).astype(np.float32),
        "spectrum_ivar": rng.uniform(0.5, 2, size=(n, C.N_WAVE)).astype(np.float32),
        "log_mstar": rng.uniform(8, 12, n).astype(np.float32),
    }


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"real survey files not found at {REAL_DATA} (see shared/data/real/README.md)")
    return REAL_DATA


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    from galclip.data import Provenance, shard_name, write_manifest, write_shard

    out = tmp_path / "ds"
    out.mkdir()
    shards = [write_shard(out / shard_name(i), random_rows(40, seed=i, start_id=40 * i))
              for i in range(3)]
    write_manifest(out, shards, Provenance(command="test", seed=0))
    return out


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a test's server or a DDP rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def galclip_env() -> dict[str, str]:
    """The environment of a ``galclip`` subprocess: this checkout's code and venv, offline."""
    import sys

    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """One ``galclip demo --preset tiny`` per test run (``GALCLIP_TINY_DEMO`` may name one made
    earlier), shared by the end-to-end tests. Tests that write into it take a copy
    (:func:`copy_of_tiny_demo`). Its users live in one file (test_tiny_demo.py), so that under
    ``pytest -n 2 --dist loadfile`` one worker makes it once."""
    import subprocess
    import sys

    given = os.environ.get("GALCLIP_TINY_DEMO")
    demo = Path(given) if given else tmp_path_factory.mktemp("tiny-demo") / "runs" / "tiny"
    if not (demo / "report" / "metrics.json").exists():
        r = subprocess.run([sys.executable, "-m", "galclip.cli", "demo", "--preset", "tiny", "--out",
                            str(demo)], env=galclip_env(), capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, (f"galclip demo --preset tiny failed:\n{r.stdout[-3000:]}\n"
                                   f"{r.stderr[-3000:]}")
    return demo


def copy_of_tiny_demo(demo: Path, dest: Path) -> Path:
    """A private copy of the shared tiny demo at ``dest`` (the original stays untouched)."""
    import shutil

    shutil.copytree(demo, dest, symlinks=True)
    return dest


#: The test files that take longest, heaviest first (summed test time on the idle 2-core box,
#: benchmarks/RESULTS.md). ``make test`` hands files to its two workers in collection order
#: (``--dist loadfile --no-loadscope-reorder``), so these start first and the many short files
#: fill in behind them (longest-processing-time-first scheduling); a heavy file that started
#: last would leave one worker idle while the other finishes it.
HEAVY_FIRST = ("test_tiny_demo.py", "test_eval_end_to_end.py", "test_sim.py",
               "test_server_timeouts.py", "test_exact_resume_ddp.py", "test_search_compressed.py",
               "test_exact_resume.py", "test_server_workers.py", "test_gpu_benchmark.py",
               "test_search_browser_astro.py", "test_help_examples.py", "test_embed_distributed.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files in :data:`HEAVY_FIRST` first, in its order; the rest keep theirs (a stable sort:
    the tests of one file stay in file order)."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
