"""The control for issue 15's "p99 < 100 ms at concurrency 32": what this box gives a server that
does no work, under the reliability campaign's own load.

``--server floor`` starts uvicorn as ``galclip serve --workers`` does (same timed httptools
protocol, a listening socket per worker; same loopback client and request plan, slow clients
included) with an ASGI app that reads each
request's body and answers a fixed 200 JSON: the HTTP stack, the client and the OS on this box
and nothing else. ``--server galclip`` is the campaign's real ``galclip serve``. ``--kinds
normal`` drops the uploads and hostile requests from the plan (only searches, objects, images,
spectra, info), to see what the rest of the mix costs the normal requests' tail.

    PYTHONPATH=src python benchmarks/explore/server_floor.py --server floor --workers 2
    PYTHONPATH=src python benchmarks/explore/server_floor.py --server galclip --kinds normal --workers 2
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reliability as R  # noqa: E402


async def floor_app(scope, receive, send):
    """Reads the request, answers ``{"ok": true}``: no routing, no validation, no work."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    body = b'{"ok": true}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve_floor(port: int, workers: int, read_timeout: float) -> None:
    """uvicorn as `galclip serve --workers` runs it (timed protocol, a listening socket per
    worker), with :func:`floor_app`."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from galclip.serve.listen import WorkerListener
    from galclip.serve.protocol import timed_protocol

    config = uvicorn.Config("server_floor:floor_app", host="127.0.0.1", port=port,
                            log_level="warning", workers=workers, limit_concurrency=512,
                            http=timed_protocol(read_timeout))
    Multiprocess(config, sockets=[WorkerListener("127.0.0.1", port)]).run()


def start_floor(cat, data, port, read_timeout, workers=1):
    here = str(Path(__file__).parent)
    code = (f"import sys; sys.path.insert(0, {here!r}); import server_floor; "
            f"server_floor.serve_floor({port}, {workers}, {float(read_timeout)})")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", choices=("floor", "galclip"), default="floor")
    p.add_argument("--kinds", choices=("all", "normal"), default="all")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--slow-clients", type=int, default=300)
    p.add_argument("--read-timeout", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.server == "floor":
        R.start_server = start_floor
    if args.kinds == "normal":
        plan = R._request_plan
        R._request_plan = lambda n, ids, blobs, seed, only=(): plan(n, ids, blobs, seed,
                                                                      only or R.NORMAL)
    print(f"server: {args.server}, request kinds: {args.kinds}")
    with tempfile.TemporaryDirectory() as d:
        res = R.server_campaign(args.requests, args.concurrency, args.slow_clients,
                                args.read_timeout, args.seed + 3, Path(d), "raw", args.workers)
    R.print_server(res, args.concurrency, args.read_timeout)


if __name__ == "__main__":
    main()
