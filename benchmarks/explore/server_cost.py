"""Server CPU per request, by kind of request (issue 15: where the ~3 ms per request go).

Starts the reliability campaign's server (same catalog, model and settings), warms it, then
sends ``--n`` requests of one kind at a time on one keep-alive connection and reads the server
process's CPU time before and after: milliseconds of server CPU per request of each kind.

    PYTHONPATH=src python benchmarks/explore/server_cost.py --n 300
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reliability as R  # noqa: E402

KINDS = ("info", "search", "search-where", "search-cross", "object", "png", "spectrum",
         "unknown-id", "bad-k", "where-40k", "upload-good")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cat, data, model, ids = R._prepare_server(tmp)
        blobs = R._upload_blobs(tmp)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        child = R.start_server(cat, data, port, 5.0)
        try:
            R._wait_up(port)
            asyncio.run(R._drive(port, R._request_plan(300, ids, blobs, 1), 8))
            print("| kind | n | server CPU ms / request | client wall p50 ms |\n|---|---|---|---|")
            for kind in KINDS:
                plan = R._request_plan(args.n, ids, blobs, 2, (kind,))
                c0 = R._cpu_s(child.pid)
                res = asyncio.run(R._drive(port, plan, 1))
                c1 = R._cpu_s(child.pid)
                wall = sorted(r[3] for r in res)[len(res) // 2] * 1e3
                print(f"| {kind} | {len(res)} | {(c1 - c0) / len(res) * 1e3:.2f} | {wall:.2f} |",
                      flush=True)
        finally:
            child.terminate()
            child.wait(10)


if __name__ == "__main__":
    main()
