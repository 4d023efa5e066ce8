"""`galclip serve --workers N` (issue 15): N processes answer on one port, with the read deadline
and the app settings of the command line, and stopping the supervisor stops them all."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import free_port
from search_fixtures import build_real


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, json.loads(r.read())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    built = build_real(tmp_path_factory.mktemp("workers"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "galclip.cli", "serve", str(built.catalog), "--port", str(port),
         "--workers", "2", "--read-timeout", "1", "--max-upload-mb", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while True:
        try:
            if _get(f"http://127.0.0.1:{port}/api/info")[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.communicate()[0][-2000:]}")
        time.sleep(0.3)
    yield proc, port, built
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_workers_answer_on_one_port(served):
    proc, port, built = served
    # both workers up (uvicorn's supervisor spawns them; the startup banner counts them)
    deadline = time.monotonic() + 60
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_children(proc.pid)) >= 2
    info = _get(f"http://127.0.0.1:{port}/api/info")[1]
    assert info["n_rows"] == 17 and info["max_upload_bytes"] == 2**19   # --max-upload-mb 0.5
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: _get(f"http://127.0.0.1:{port}/api/info")[0], range(40)))
    assert codes == [200] * 40


@pytest.mark.slow
def test_workers_keep_the_read_deadline(served):
    _, port, _ = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n")     # never finishes its headers
        t0 = time.monotonic()
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 > 0.5              # by the 1 s deadline, not at once


@pytest.mark.slow
def test_stopping_the_supervisor_stops_every_worker(served):
    proc, port, _ = served
    workers = _children(proc.pid)
    assert workers
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() and "zombie" not in _state(w) for w in workers):
        assert time.monotonic() < deadline, "workers outlived the supervisor"
        time.sleep(0.1)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]).lower()
    except (OSError, IndexError):
        return "zombie"


def test_connections_get_tcp_nodelay_whatever_the_listening_socket():
    """uvicorn's --workers socket has proto 0, so asyncio leaves Nagle on (40 ms per response)."""
    from galclip.serve.protocol import _no_delay

    with socket.socket(socket.AF_INET) as listener:          # proto 0, as uvicorn binds it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            conn, _ = listener.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                _no_delay(type("T", (), {"get_extra_info": lambda self, k: conn})())
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert client


@pytest.mark.slow
def test_workers_exit_when_the_supervisor_is_killed(tmp_path):
    """kill -9 of the supervisor leaves no orphaned worker serving on the port."""
    built = build_real(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "galclip.cli", "serve", str(built.catalog), "--port", str(port),
         "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 3:       # uvicorn's resource tracker + 2 workers
            assert proc.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/api/info")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "server did not answer"
                time.sleep(0.3)
        workers = _children(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{w}").exists() and "zombie" not in _state(w) for w in workers):
        assert time.monotonic() < deadline, "orphaned workers kept running"
        time.sleep(0.2)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_each_worker_gets_its_own_listening_socket_and_the_kernel_spreads_connections():
    """The supervisor's socket holds the port without listening; each copy a worker unpickles
    (uvicorn spawns them) is a new socket on the same port, and connections reach both."""
    import multiprocessing.reduction as reduction
    import pickle

    from galclip.serve.listen import WorkerListener

    parent = WorkerListener("127.0.0.1", 0)
    port = parent.getsockname()[1]
    workers = [pickle.loads(reduction.ForkingPickler.dumps(parent)) for _ in range(2)]
    try:
        assert all(isinstance(w, WorkerListener) and w.getsockname() == ("127.0.0.1", port)
                   and w.fileno() != parent.fileno() for w in workers)
        for w in workers:
            w.listen(64)
            w.settimeout(5)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        accepted = [0, 0]
        for i, w in enumerate(workers):
            w.setblocking(False)
            while True:
                try:
                    conn, _ = w.accept()
                except BlockingIOError:
                    break
                accepted[i] += 1
                conn.close()
        assert sum(accepted) == 40 and min(accepted) > 0, accepted  # 2**-39 to fail by chance
        for c in clients:
            c.close()
        with pytest.raises(OSError):          # a port in use is an error before any worker
            with socket.socket() as other:
                other.bind(("127.0.0.1", port))
    finally:
        for s in (parent, *workers):
            s.close()
