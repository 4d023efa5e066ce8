"""The explorer's read deadline (galclip.serve.protocol.timed_protocol) on a tiny app: it cuts off
clients that send too slowly, and nothing else (issue 15)."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
from fastapi import Request  # at module level: FastAPI resolves the string annotations here

from search_fixtures import serve_in_thread

TIMEOUT = 0.4
HOG = 5 * TIMEOUT                # each of /hog's two blocks of the event loop
KEEP_ALIVE = 2                   # uvicorn's idle keep-alive timeout, s (> 1.5 TIMEOUT by a margin)
WAIT = 20.0                      # a client's socket timeout: only a hung server gets near it

# No assertion here is on how fast the machine is: a deadline that should fire is checked by
# what the client reads (a 408, or the server's end of stream as opposed to the client's own
# socket timeout), and times only from below, with a margin (a deadline never fires early, but
# the server's clock may start a little before the client's); a loaded machine only makes
# things later.


def _app():
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.middleware("http")
    async def early_413(request: Request, call_next):
        if request.url.path == "/refuse":            # answers before reading the body
            return JSONResponse({"detail": "too large"}, status_code=413)
        return await call_next(request)

    @app.get("/slow")
    def slow() -> dict:
        time.sleep(3 * TIMEOUT)
        return {"ok": True}

    @app.get("/hog")
    async def hog() -> dict:                        # blocks the event loop twice
        time.sleep(HOG)
        await asyncio.sleep(0)
        time.sleep(HOG)
        return {"ok": True}

    @app.post("/late-read")
    async def late_read(request: Request) -> dict:
        await asyncio.sleep(3 * TIMEOUT)
        return {"n": len(await request.body())}

    @app.get("/quick")
    def quick() -> dict:
        return {"ok": True}

    return app


@pytest.fixture(scope="module", params=["httptools", "h11"])
def port(request):
    """The app behind each of the two timed protocols (httptools: what `galclip serve` uses)."""
    import functools

    from galclip.serve import protocol

    cls = {"httptools": getattr(protocol, "TimedHttpToolsProtocol", None),
           "h11": protocol.TimedH11Protocol}[request.param]
    if cls is None:
        pytest.skip("httptools is not installed")
    yield from serve_in_thread(_app(), log_level="critical", timeout_keep_alive=KEEP_ALIVE,
                               http=functools.partial(cls, read_timeout=TIMEOUT))


def test_serve_uses_the_httptools_protocol_when_installed():
    pytest.importorskip("httptools")
    from galclip.serve.protocol import TimedHttpToolsProtocol, timed_protocol

    assert timed_protocol(3).func is TimedHttpToolsProtocol and timed_protocol(3).keywords == {
        "read_timeout": 3.0}


def _recv_all(s: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    return got


def _one_response(s: socket.socket) -> bytes:
    """One response with a content-length, read off a keep-alive connection."""
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _get(path: str, close: bool = True) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nhost: x\r\n" + ("connection: close\r\n" if close else "") +
            "\r\n").encode()


def _closed_by_server(s: socket.socket) -> bool:
    """Reads until the server ends the stream (True) or the client's own timeout runs out."""
    try:
        while s.recv(65536):
            pass
    except TimeoutError:
        return False
    return True


def _conn(port: int, wait: float = WAIT) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(wait)
    return s


@pytest.mark.slow
def test_a_handler_slower_than_the_read_timeout_still_answers(port):
    with _conn(port) as s:
        s.sendall(_get("/slow"))
        assert _recv_all(s).startswith(b"HTTP/1.1 200")


@pytest.mark.slow
def test_a_body_sent_at_once_but_read_late_by_the_app_is_not_cut_off(port):
    # 300 KB: past uvicorn's 64 KiB high-water mark, so it stops reading until the app reads;
    # the old deadline ran on and answered 408 / reset a client that had sent everything
    body = b"x" * 300_000
    with _conn(port) as s:
        s.sendall(b"POST /late-read HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                  b"content-length: %d\r\n\r\n" % len(body) + body)
        got = _recv_all(s)
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b'{"n":300000}'), got[:200]


@pytest.mark.slow
def test_a_request_waiting_in_the_socket_of_a_busy_loop_is_served(port):
    # A connects (its deadline starts); /hog then blocks the loop past A's deadline, yields,
    # and blocks again; A's request arrives during the second block, so when the loop runs
    # A's expired timer the request is in the socket but not yet read. The old protocol
    # closed A there (the client saw a reset: the load test's ReadErrors).
    with _conn(port) as a, _conn(port) as b:
        time.sleep(0.05)
        b.sendall(_get("/hog"))
        time.sleep(1.5 * HOG)                      # the middle of the second block
        a.sendall(_get("/quick"))
        got = _recv_all(a)
        assert _recv_all(b).startswith(b"HTTP/1.1 200")
    assert got.startswith(b"HTTP/1.1 200"), got


@pytest.mark.parametrize("partial", [
    b"GET /quick HTTP/1.1\r\nhost: x\r\n",                                   # headers unfinished
    b"POST /late-read HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\nabc",  # body unfinished
])
def test_slow_clients_still_get_408(port, partial):
    with _conn(port) as s:
        s.sendall(partial)
        for _ in range(3):                           # trickle: a byte now and then
            time.sleep(TIMEOUT / 3)
            try:
                s.sendall(b"x")
            except OSError:
                break
        got = _recv_all(s)                           # without the deadline: nothing, until WAIT
    assert got.startswith(b"HTTP/1.1 408"), got


def test_a_client_still_sending_after_its_408_reads_the_408_not_a_reset(port):
    # the server drains a cut-off client before closing: closing a socket with unread bytes in
    # it makes the kernel send a reset, and the client's next read failed (CI saw this when a
    # trickled byte crossed the 408); here the client sends on well past its deadline
    with _conn(port) as s:
        s.sendall(b"POST /late-read HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\nabc")
        time.sleep(1.5 * TIMEOUT)                    # the 408 is sent meanwhile
        for _ in range(10):
            s.sendall(b"x" * 100)                    # still the body, after the 408
            time.sleep(0.02)
        got = _recv_all(s)                           # a reset raises ConnectionResetError
    assert got.startswith(b"HTTP/1.1 408"), got


def test_the_drain_after_a_408_ends(port, monkeypatch):
    from galclip.serve import protocol

    monkeypatch.setattr(protocol, "LINGER_S", 0.3)
    with _conn(port) as s:
        s.sendall(b"GET /quick HTTP/1.1\r\nhost: x\r\n")
        got = b""
        while chunk := s.recv(65536):                # the 408, then the server's FIN
            got += chunk
        assert got.startswith(b"HTTP/1.1 408"), got
        t0 = time.perf_counter()
        with pytest.raises(OSError):                 # the server closes, and then resets
            while time.perf_counter() - t0 < WAIT:   # (an endless drain would run out of WAIT)
                s.sendall(b"x")
                time.sleep(0.05)


def test_a_silent_connection_is_closed(port):
    with _conn(port) as s:
        t0 = time.perf_counter()
        assert _closed_by_server(s)
        # by the deadline, not at once (half of it: the server's clock starts at its accept,
        # which may run before this client notes t0)
        assert time.perf_counter() - t0 > TIMEOUT / 2


@pytest.mark.slow
def test_keep_alive_still_works_and_still_times_out(port):
    with _conn(port) as s:
        for _ in range(3):
            s.sendall(_get("/quick", close=False))
            assert _one_response(s).startswith(b"HTTP/1.1 200")
            time.sleep(TIMEOUT * 1.5)                # idle past the read timeout: fine
        t0 = time.perf_counter()
        assert _closed_by_server(s)                  # then uvicorn's keep-alive closes
        assert time.perf_counter() - t0 > 0.5        # by keep-alive (~1.4 s left), not at once


@pytest.mark.slow
def test_a_body_answered_early_ends_in_keep_alive_not_408(port):
    # the middleware answers 413 before reading; the rest of the body arrives afterwards and
    # is discarded; the idle connection is then left to keep-alive, with no stray 408
    body = b"x" * 200_000
    with _conn(port) as s:
        s.sendall(b"POST /refuse HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body)
                  + body)
        time.sleep(0.2)
        first = _one_response(s)
        assert first.startswith(b"HTTP/1.1 413"), first
        s.sendall(_get("/quick", close=False))
        assert _one_response(s).startswith(b"HTTP/1.1 200")
        assert _closed_by_server(s)                  # keep-alive, no stray 408
