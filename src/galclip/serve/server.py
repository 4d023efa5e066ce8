"""The galclip explorer: a FastAPI service over one embedding catalog, and its web page.

JSON endpoints (OpenAPI docs at ``/docs``): search by object id or by an uploaded FITS cutout or
spectrum, object details, a colour composite PNG and spectrum data for plots. The page in
``static/`` uses only these endpoints and no external resource.

Safe by default: read-only (nothing is written), no file-system path is ever taken from a
request (objects are addressed by ``object_id`` only), uploads are limited in size and parsed
in memory, and every bad request gets a 4xx with a message rather than a 500.

Where requests run: work bounded by one object or by ``k`` (catalog info, an object's row, a
cached PNG, the binned spectrum of a row already decoded, a search through an approximate
index or in a catalog of at most ``INLINE_ROWS`` rows) runs on the event loop; work that reads
a whole large catalog (an exact scan, a ``where`` filter past ``INLINE_ROWS``), reads dataset
rows from disk or parses and embeds an upload runs in the thread pool. The hop to a thread and
back cost ~0.5 ms of CPU per request on a 2-core box, a third of a small search
(``benchmarks/explore/server_cost.py``).
"""
from __future__ import annotations

import threading
import warnings
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from galclip.modalities import MODALITIES, ModalityName, input_columns
from galclip.render import line_list
from galclip.search.api import CONE_RADIUS_ARCSEC, Catalog, K
from galclip.search.catalog import CatalogError
from galclip.search.index import EXACT_THRESHOLD
from galclip.serve.limits import DATA_CACHE_BYTES, MAX_UPLOAD_BYTES, UPLOAD_THREADS

STATIC = Path(__file__).with_name("static")
MAX_K = 200
# a catalog this small is scanned (exactly, or by a where-filter) in about a millisecond: its
# searches run on the event loop (the size below which `galclip index` builds exact indexes)
INLINE_ROWS = EXACT_THRESHOLD


class DatasetAccess:
    """Reads a catalog object's image and spectrum from the dataset the catalog was made from."""

    def __init__(self, data_dir: str | Path, catalog: Catalog, cache_bytes: int = DATA_CACHE_BYTES):
        from galclip.data import open_dataset

        ds = open_dataset(data_dir)
        recorded = catalog.manifest.get("dataset", {}).get("shards_sha256")
        if recorded and ds.fingerprint != recorded:
            raise CatalogError(f"{data_dir}: this dataset is not the one catalog {catalog.path} "
                               f"was made from (shard checksums differ)")
        if len(ds) != catalog.n_rows:
            raise CatalogError(f"{data_dir}: has {len(ds)} rows, catalog has {catalog.n_rows}")
        cols = [c for c in input_columns() if c in ds.manifest["columns"]]
        self.dataset = open_dataset(data_dir, columns=cols, verify=False, cache_bytes=cache_bytes)
        self.catalog = catalog
        self._lock = threading.Lock()

    def is_cached(self, object_id: int) -> bool:
        """Whether the object's row is in the decoded cache (a read without I/O). Not under the
        lock: asked on the event loop, it must not wait for a thread decoding a row group (a
        dict lookup is atomic; an answer gone stale costs one slower request, nothing else)."""
        return self.dataset.is_cached(self.catalog.row_of(object_id))

    def row(self, object_id: int) -> dict:
        r = self.catalog.row_of(object_id)
        with self._lock:
            item = self.dataset[r]
        if int(item["object_id"]) != object_id:
            raise CatalogError(f"dataset row {r} holds object {item['object_id']}, not {object_id}")
        return item


class LimitBody:
    """413 for a request whose declared body is past ``max_bytes``, before it is read.

    Plain ASGI: Starlette's ``@app.middleware("http")`` (BaseHTTPMiddleware) runs every request
    through an extra task, a task group and memory streams, a measurable share of a request's
    server CPU in the 32-way load test (benchmarks/RESULTS.md)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if value.isdigit() and int(value) > self.max_bytes:
                        limit = self.max_bytes - 65536
                        response = JSONResponse({"detail": f"upload too large: {int(value)} "
                                                 f"bytes, limit {limit} bytes"}, status_code=413)
                        return await response(scope, receive, send)
                    break
        await self.app(scope, receive, send)


def create_app(catalog_dir: str | Path | None = None, *, data_dir: str | Path | None = None,
               catalog: Catalog | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               cache_bytes: int = DATA_CACHE_BYTES, torch_threads: int | None = 1,
               upload_threads: int = UPLOAD_THREADS, predictions: str | Path | None = None,
               outliers: str | Path | None = None):
    """The FastAPI app for one catalog (``catalog`` may be given already opened);
    ``cache_bytes`` bounds the dataset's decoded row-group cache (images, spectra).

    ``upload_threads`` bounds how many uploads are parsed and embedded at once in this process
    (the rest wait their turn): an upload costs ~10-15 ms of CPU, 10x a search, and many at once
    in the thread pool starve the event loop that answers everything else (at
    concurrency 32 one upload lane took the p99 of the other requests from 155-187 ms to
    52-96 ms and raised throughput; benchmarks/RESULTS.md).

    ``predictions`` / ``outliers``: files of ``galclip predict`` / ``galclip outliers`` the
    explorer shows (``galclip.serve.overlays``).

    ``torch_threads`` sets torch's intra-op threads for the process (None: leave them): the
    server embeds one upload per request, on many request threads at once, and torch's default
    team of one thread per core spins against them (measured: 33 ms of CPU per tiny-CLIP
    embedding with 2 threads vs 5 ms with 1 on a 2-core box)."""
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    cat = catalog or Catalog(catalog_dir)
    for m in cat.modalities:
        cat.index(m)  # load (or build) every index before serving
    data = _dataset_access(cat, data_dir, cache_bytes)
    app = _new_app(cat, data, max_upload_bytes)
    uploads = _upload_lanes(upload_threads)
    http = HttpCatalog(cat)
    _info_route(app, cat, data, max_upload_bytes)
    _search_routes(app, http, max_upload_bytes, uploads)
    _object_routes(app, http, data)
    _astronomer_routes(app, cat, max_upload_bytes, uploads)
    _overlay_routes(app, cat, predictions, outliers)
    _page_routes(app)
    return app


def _new_app(cat: Catalog, data: DatasetAccess | None, max_upload_bytes: int) -> FastAPI:
    """The bare app: title, offline docs, OpenAPI 3.0, the body-size limit."""
    app = FastAPI(title="galclip explorer", version="1", docs_url=None, redoc_url=None,
                  description=f"Search {cat.n_rows} galaxies of catalog {cat.path.name} by "
                              f"image and spectrum embeddings.")
    _offline_docs(app)
    app.state.dataset_access = data
    _openapi_30(app)
    app.add_middleware(LimitBody, max_bytes=max_upload_bytes + 65536)
    return app


def _upload_lanes(upload_threads: int) -> anyio.CapacityLimiter:
    """How many uploads are parsed and embedded at once (see :func:`create_app`)."""
    if not isinstance(upload_threads, int) or upload_threads < 1:
        raise ValueError(f"upload_threads must be a positive integer, got {upload_threads!r}")
    return anyio.CapacityLimiter(upload_threads)


class HttpCatalog:
    """A catalog's searches and row lookups with their errors turned into HTTP statuses."""

    def __init__(self, cat: Catalog):
        self.cat = cat

    def search(self, **kw) -> dict:
        if not 1 <= kw["k"] <= MAX_K:
            raise HTTPException(422, f"k must be between 1 and {MAX_K}")
        try:
            return self.cat.search(**kw).to_dict()
        except KeyError as e:
            raise HTTPException(404, e.args[0]) from None
        except (ValueError, CatalogError) as e:
            raise HTTPException(400, str(e)) from None
        except FileNotFoundError as e:  # the catalog's model checkpoint is gone
            raise HTTPException(503, f"cannot embed uploads: {e}") from None

    def row(self, object_id: int) -> int:
        try:
            return self.cat.row_of(object_id)
        except KeyError as e:
            raise HTTPException(404, e.args[0]) from None

    def scans(self, to: str, where: str | None) -> bool:
        """Whether a search reads every row of a large catalog (then: in the thread pool)."""
        cat = self.cat
        if cat.n_rows <= INLINE_ROWS:
            return False
        return where is not None or to not in cat.modalities or cat.index(to).kind == "flat"


def _info_route(app: FastAPI, cat: Catalog, data: DatasetAccess | None, max_upload_bytes: int) -> None:
    @app.get("/api/info", summary="What the catalog holds")
    async def info() -> dict:
        return {"n_rows": cat.n_rows, "modalities": cat.modalities,
                "filterable_columns": cat.filterable_columns(),
                "columns": [c for c in cat.meta], "has_data": data is not None,
                "model_sha256": cat.manifest["model"]["sha256"],
                "indexes": {m: cat.index(m).info for m in cat.modalities},
                "example_ids": [int(i) for i in cat.meta["object_id"][:: max(1, cat.n_rows // 12)][:12]],
                "max_upload_bytes": max_upload_bytes, "lines": line_list()}


def _search_routes(app: FastAPI, http: HttpCatalog, max_upload_bytes: int,
                   uploads: anyio.CapacityLimiter) -> None:
    @app.get("/api/search", summary="Neighbours of a catalog object")
    async def search_id(id: int, from_: Annotated[ModalityName, Query(alias="from")] = "image",
                        to: ModalityName | None = None, k: int = K,
                        where: str | None = None, include_self: bool = False) -> dict:
        http.row(id)
        kw = dict(id=id, from_=from_, to=to, k=k, where=where or None,
                  exclude_self=False if include_self else None)
        if http.scans(to or from_, kw["where"]):
            return await run_in_threadpool(partial(http.search, **kw))
        return http.search(**kw)

    @app.post("/api/search/upload", summary="Neighbours of an uploaded FITS cutout or spectrum")
    async def search_upload(file: Annotated[UploadFile, File()],
                            kind: Annotated[ModalityName, Form()],
                            to: Annotated[ModalityName | None, Form()] = None,
                            k: Annotated[int, Form()] = K,
                            where: Annotated[str | None, Form()] = None,
                            targetid: Annotated[int | None, Form()] = None,
                            row: Annotated[int | None, Form()] = None) -> dict:
        body, name = await read_upload(file, max_upload_bytes)
        search = partial(_parse_and_search, http, body, name, kind, targetid, row, to=to, k=k,
                         where=where or None)
        res = await anyio.to_thread.run_sync(search, limiter=uploads)
        res["query"]["file"] = name
        if targetid is not None:  # as a string: 64-bit ids exceed JavaScript's exact integers
            res["query"]["targetid"] = str(targetid)
        if row is not None:
            res["query"]["row"] = row
        return res


def _parse_and_search(http: HttpCatalog, body: bytes, name: str, kind: str, targetid: int | None,
                      row: int | None, **search) -> dict:
    """Parse an uploaded query file and search with it: CPU work (FITS parse, embedding), run
    in a thread, never on the event loop."""
    from galclip.search.queryfile import IvarEstimatedWarning, read_image_fits, read_spectrum_fits

    with warnings.catch_warnings():   # an estimated ivar is in query.ivar_estimated
        warnings.simplefilter("ignore", IvarEstimatedWarning)
        q = checked_parse(read_image_fits if kind == "image" else partial(
            read_spectrum_fits, targetid=targetid, row=row), body, name)
    key = "image" if kind == "image" else "spectrum"
    return http.search(**{key: q}, **search)


def _object_routes(app: FastAPI, http: HttpCatalog, data: DatasetAccess | None) -> None:
    cat = http.cat

    @app.get("/api/objects/{object_id}", summary="Properties of one object")
    async def obj(object_id: int) -> dict:
        return cat.properties(http.row(object_id))

    pngs = PngCache(lambda object_id: data.row(object_id))

    @app.get("/api/objects/{object_id}/image.png", summary="g,r,z colour composite",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def image_png(object_id: int) -> Response:
        http.row(object_id)
        _need(data, MODALITIES["image"])
        png = pngs.get(object_id)  # rendered before: on the loop; else decode in a thread
        if png is None:
            png = await run_in_threadpool(pngs.render, object_id)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/objects/{object_id}/spectrum", summary="Binned spectrum and emission lines")
    async def spectrum(object_id: int, bins: int = Query(600, ge=20, le=7781)) -> dict:
        r = http.row(object_id)
        _need(data, MODALITIES["spectrum"])

        def draw() -> dict:
            return {"object_id": object_id, **MODALITIES["spectrum"].draw(
                data.row(object_id), n_bins=bins, redshift=_py_float(cat.meta["redshift"][r]))}

        # a row already decoded is binned on the loop (~1 ms); one to read from disk in a thread
        return draw() if data.is_cached(object_id) else await run_in_threadpool(draw)


def _overlay_routes(app: FastAPI, cat: Catalog, predictions: str | Path | None,
                    outliers: str | Path | None) -> None:
    from galclip.serve import overlays

    overlays.add_routes(app, cat, predictions and overlays.load_predictions(predictions, cat),
                        outliers and overlays.load_outliers(outliers, cat))


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


class PngCache:
    """Colour-composite PNGs of the last ``size`` objects asked for (least recently used out)."""

    def __init__(self, row, size: int = 4096):
        from collections import OrderedDict

        self.row, self.size = row, size
        self._png: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, object_id: int) -> bytes | None:
        with self._lock:
            png = self._png.get(object_id)
            if png is not None:
                self._png.move_to_end(object_id)
            return png

    def render(self, object_id: int) -> bytes:
        from galclip.render import png_bytes

        png = png_bytes(MODALITIES["image"].draw(self.row(object_id)))
        with self._lock:
            self._png[object_id] = png
            while len(self._png) > self.size:
                self._png.popitem(last=False)
        return png


def worker_app(*args, **kwargs):
    """:func:`create_app` for one of ``galclip serve --workers``'s processes, which also exits
    when its supervisor is gone (killed with -9, say): uvicorn's workers would otherwise keep
    serving, orphaned, on the shared socket."""
    exit_with_parent()
    return create_app(*args, **kwargs)


def exit_with_parent(poll_s: float = 1.0) -> None:
    """A daemon thread that sends this process SIGTERM (a graceful stop) once its parent has
    changed, i.e. the parent died and the process was re-parented."""
    import os
    import signal
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _offline_docs(app) -> None:
    """OpenAPI docs at /docs with Swagger UI served from the installed swagger-ui-bundle
    package (FastAPI's default page loads it from a CDN, which an offline machine cannot reach)."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="galclip explorer API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _astronomer_routes(app, cat: Catalog, max_upload_bytes: int, uploads) -> None:
    """Cone search by position and a preview of an uploaded query file (with the fibres of a
    DESI coadd to pick from)."""

    @app.get("/api/cone", summary="Objects within a radius of a sky position, nearest first")
    def cone(ra: float, dec: float, radius: float = Query(CONE_RADIUS_ARCSEC, gt=0, description="arcsec"),
             k: int = Query(MAX_K, ge=1, le=MAX_K), where: str | None = None) -> dict:
        try:
            return cat.cone(ra, dec, radius, k=k, where=where or None).to_dict()
        except (ValueError, CatalogError) as e:
            raise HTTPException(400, str(e)) from None

    @app.post("/api/preview", summary="What an uploaded FITS file holds, before searching with it")
    async def preview(file: Annotated[UploadFile, File()],
                      kind: Annotated[ModalityName, Form()],
                      targetid: Annotated[int | None, Form()] = None,
                      row: Annotated[int | None, Form()] = None) -> dict:
        body, name = await read_upload(file, max_upload_bytes)
        # the same size, decompression and malformed-file checks as a search upload; parsing
        # and rendering run in the thread pool, not on the event loop
        return await anyio.to_thread.run_sync(
            checked_parse, lambda b, n: _preview(b, n, kind, targetid, row), body, name,
            limiter=uploads)


async def read_upload(file: UploadFile, max_bytes: int) -> tuple[bytes, str]:
    """An upload's bytes and base name: 413 past ``max_bytes``, 400 when empty."""
    body = await file.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise HTTPException(413, f"upload too large: limit {max_bytes} bytes")
    if not body:
        raise HTTPException(400, "uploaded file is empty")
    return body, Path(file.filename or "upload").name


def checked_parse(reader, body: bytes, name: str):
    """``reader(body, name)`` behind the upload checks of :mod:`galclip.serve.limits`; a
    rejected or malformed file becomes its 4xx."""
    from galclip.serve.limits import UploadRejected, parse_upload

    try:
        return parse_upload(reader, body, name)
    except UploadRejected as e:
        raise HTTPException(e.status, str(e)) from None


def _preview(body: bytes, name: str, kind: str, targetid: int | None, row: int | None) -> dict:
    """{"file", "kind", "png" (data URL) | "spectrum" (plot data), "targets" (DESI fibres)}."""
    import base64

    from galclip.render import png_bytes
    from galclip.search.queryfile import (
        IvarEstimatedWarning,
        list_targets,
        read_image_fits,
        read_spectrum_fits,
    )

    out: dict = {"file": name, "kind": kind}
    if kind == "image":
        png = png_bytes(MODALITIES["image"].draw({"image": read_image_fits(body, name)}))
        out["png"] = "data:image/png;base64," + base64.b64encode(png).decode()
        return out
    targets = [{**t, "targetid": None if t["targetid"] is None else str(t["targetid"])}
               for t in list_targets(body, name)]  # strings: 64-bit ids exceed JS's exact integers
    out["targets"] = targets if len(targets) > 1 else []
    if len(targets) > 1 and targetid is None and row is None:
        return out  # the page asks which fibre first
    spectrum = MODALITIES["spectrum"]
    with warnings.catch_warnings():   # said in the preview's ivar_estimated
        warnings.simplefilter("ignore", IvarEstimatedWarning)
        arrays = read_spectrum_fits(body, name, targetid=targetid, row=row)
    out["ivar_estimated"] = arrays.ivar_estimated
    out["spectrum"] = spectrum.draw(dict(zip(spectrum.inputs, arrays, strict=True)),
                                    redshift=None, n_bins=1500)
    return out


def _openapi_30(app) -> None:
    """Serve the schema as OpenAPI 3.0.3, the version the bundled Swagger UI (4.x) renders:
    FastAPI writes 3.1, whose ``anyOf [..., {"type": "null"}]`` becomes ``nullable: true``."""
    from fastapi.openapi.utils import get_openapi

    def schema() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes, openapi_version="3.0.3")
            app.openapi_schema = _nullable_30(doc)
        return app.openapi_schema

    app.openapi = schema


def _nullable_30(node):
    """Rewrite OpenAPI 3.1 null unions and ``examples`` lists into their 3.0 forms."""
    if isinstance(node, list):
        return [_nullable_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable_30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            node.pop(key)
            node["nullable"] = True
            if len(rest) == 1:
                node.update(rest[0] if "$ref" not in rest[0] else {"allOf": rest})
            else:
                node[key] = rest
    if node.get("type") == "null":
        node.pop("type")
        node["nullable"] = True
    if isinstance(node.get("examples"), list) and "example" not in node:
        node["example"] = node.pop("examples")[0] if node["examples"] else None
    return node


def _need(data: DatasetAccess | None, modality) -> None:
    missing = data is None or any(c not in data.dataset.columns for c in modality.inputs)
    if missing:
        raise HTTPException(404, f"no {modality.inputs[0]} available: start the server with "
                                 f"--data pointing at the dataset the catalog was made from")


def _dataset_access(cat: Catalog, data_dir, cache_bytes: int) -> DatasetAccess | None:
    if data_dir is None:
        recorded = cat.manifest.get("dataset", {}).get("path")
        if not recorded or not (Path(recorded) / "manifest.json").exists():
            return None
        data_dir = recorded
    return DatasetAccess(data_dir, cat, cache_bytes)


def _py_float(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None
