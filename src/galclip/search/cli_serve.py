"""Serve an embedding catalog: JSON search API, OpenAPI docs at /docs and a web explorer.

Binds 127.0.0.1 by default; read-only; uploads are size-limited and validated. With --data
(default: the dataset the catalog was made from, if present) the explorer shows colour images
and spectra.

Example:  galclip serve runs/demo/catalog --data runs/demo/data --port 8000
          then open http://127.0.0.1:8000/
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    p.add_argument("--data", default=None, help="dataset folder for images and spectra")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=20.0)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from galclip.search.server import create_app

    app = create_app(args.catalog, data_dir=args.data,
                     max_upload_bytes=int(args.max_upload_mb * 2**20))
    print(f"galclip serve: http://{args.host}:{args.port}/  (API docs at /docs)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
