"""Serve an embedding catalog: JSON search API, OpenAPI docs at /docs and a web explorer.

Binds 127.0.0.1 by default; read-only; uploads are size-limited and validated (declared and
decompressed sizes checked before anything is allocated); a request whose headers and body do
not arrive within --read-timeout seconds gets 408. --workers N serves from N processes (uvicorn's
supervisor; one listening socket per worker on one port, so the kernel spreads connections
over them; a worker that dies is replaced), each with its own copy of
the catalog, index and model: throughput grows with the cores, memory with N. With --data
(default: the dataset the catalog was made from, if present) the explorer shows colour images
and spectra.

Example:  galclip serve runs/demo/catalog --data runs/demo/data --port 8000
          then open http://127.0.0.1:8000/
"""
from __future__ import annotations

import argparse

from galclip.argtypes import float_range, int_range, port
from galclip.serve.limits import DATA_CACHE_BYTES, MAX_UPLOAD_BYTES, READ_TIMEOUT_S, UPLOAD_THREADS

MIB = 2**20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    p.add_argument("--data", default=None, help="dataset folder for images and spectra")
    p.add_argument("--predictions", default=None,
                   help="galclip predict output (.parquet) of this catalog: the explorer draws "
                        "each galaxy's redshift density")
    p.add_argument("--outliers", default=None,
                   help="galclip outliers output (.parquet) of this catalog: the explorer lists "
                        "the unusual galaxies")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port, default=8000)
    p.add_argument("--max-upload-mb", type=float_range(0, 1024, inclusive_lo=False),
                   default=MAX_UPLOAD_BYTES / MIB, help="largest query file (default %(default)s)")
    p.add_argument("--cache-mb", type=float_range(0), default=DATA_CACHE_BYTES / MIB,
                   help="memory for decoded dataset row groups (images, spectra); default %(default)s")
    p.add_argument("--read-timeout", type=float_range(0, 3600, inclusive_lo=False),
                   default=READ_TIMEOUT_S, metavar="S",
                   help="seconds a client has to send a request (default %(default)s)")
    p.add_argument("--upload-threads", type=int_range(1, 64), default=UPLOAD_THREADS, metavar="N",
                   help="uploads each worker parses and embeds at once; the rest queue "
                        "(default %(default)s: uploads cannot starve the other requests)")
    p.add_argument("--workers", type=int_range(1, 256), default=1, metavar="N",
                   help="server processes (default 1; about one per core that serving may use)")


def run(args: argparse.Namespace) -> int:
    import functools

    import uvicorn

    from galclip.serve.protocol import timed_protocol
    from galclip.serve.server import create_app, worker_app

    settings = {"data_dir": args.data, "max_upload_bytes": int(args.max_upload_mb * MIB),
                "cache_bytes": int(args.cache_mb * MIB), "upload_threads": args.upload_threads,
                "predictions": args.predictions, "outliers": args.outliers}
    # built here first in any case: a bad catalog or dataset is a clean error before anything
    # listens, and a missing index is built once, not by every worker at the same time
    app = create_app(args.catalog, **settings)
    config = uvicorn.Config(app if args.workers == 1 else
                            functools.partial(worker_app, args.catalog, **settings),
                            factory=args.workers > 1,
                            host=args.host, port=args.port, log_level="warning",
                            http=timed_protocol(args.read_timeout), limit_concurrency=512,
                            workers=args.workers)
    print(f"galclip serve: http://{args.host}:{args.port}/  (API docs at /docs)"
          + (f", {args.workers} worker processes" if args.workers > 1 else ""), flush=True)
    if args.workers == 1:
        uvicorn.Server(config).run()
        return 0
    from uvicorn.supervisors import Multiprocess

    from galclip.serve import listen

    del app                      # the supervisor serves nothing itself
    # one listening socket per worker (SO_REUSEPORT): the kernel spreads connections over them
    # instead of handing most to one worker (galclip.serve.listen)
    try:
        sock = (listen.WorkerListener(args.host, args.port) if listen.SUPPORTED
                else config.bind_socket())
    except OSError as e:
        raise SystemExit(f"galclip serve: cannot listen on {args.host}:{args.port}: {e}") from None
    Multiprocess(config, sockets=[sock]).run()
    return 0
