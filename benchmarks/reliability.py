"""Reliability campaign: corrupted inputs for every reader, hostile and normal requests against a
live server. Prints tallies; the goal is 0 tracebacks, 0 silently wrong outputs, 0 server
errors (5xx), every request its expected status, and warm p99 < 100 ms for normal requests.

Readers (seeded byte corruptions from ``galclip.testing.corrupt``, ``--variants`` each):
  desi-coadd / desi-redrock  a real DESI file from ../shared/data/real/desi, read with its
                             partner file; outcome: error naming the file, reject naming it,
                             output identical to the clean file's, or (redrock only: it carries
                             no checksum) a changed but physically plausible redshift
  dataset                    a small galclip dataset: half corrupted manifests (random deletions
                             and type swaps), half corrupted shard bytes; `validate` with content
                             checks must raise DatasetError or read back exactly the clean data
  cutout, stein, mmu-legacysurvey, mmu-desi, astroclip-h5, provabgs
                             a small clean file of each format (galclip.testing.examples): half
                             byte corruptions, half one impossible value (NaN/inf/out-of-range
                             position, redshift, flux, ivar, pixel, property); outcome: error or
                             reject naming the file, output identical to the clean file's, or
                             (bytes only: these formats have no checksum) a changed output whose
                             every value is possible; anything else is WRONG
Server (loopback, `galclip serve` in a separate process, ``--workers`` processes):
  ``--requests`` requests at ``--concurrency``: searches, objects, images, spectra, hostile
  `where` strings, malformed / huge / bomb / fuzzed uploads; plus ``--slow-clients`` sockets
  that never finish their headers or trickle a body at 1 byte/s (each must get 408).
  The load generator (``--client raw``, the default) is a lean one: one HTTP/1.1 keep-alive
  connection per concurrent worker over asyncio streams, pre-encoded request bytes, and only
  the status line and the body's framing parsed. httpx (``--client httpx``, the first one)
  spent 5.5 ms of CPU per request of this mix, more than the server's 2-4 ms, on the same 2
  cores, so the campaign measured its own client as much as the server. Both clients count a
  connection closed before its response as a client error (no retries). The CPU each side
  spent per request is printed.

    .venv/bin/python benchmarks/reliability.py --variants 1000 --requests 10000 --concurrency 32
    .venv/bin/python benchmarks/reliability.py --server-only --requests 10000 --concurrency 32 [--workers 2]
    .venv/bin/python benchmarks/reliability.py --readers-only --formats cutout stein provabgs
    .venv/bin/python benchmarks/reliability.py --soak 100000 --concurrency 32 --workers 2

``--soak N``: N requests of the same mix (no slow clients) in chunks of 10,000, the server's
resident memory (all its processes, /proc VmRSS) recorded after the first 10,000 and after each
chunk: a leak shows as growth after the warm-up; the goal is the end within 10 % of the first.
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "desi"
TAG = "4-80613-thru20210324"
EXACT = ("object_id", "ra", "dec", "spectrum_flux", "spectrum_ivar", "flux_g", "flux_r")


# ----------------------------------------------------------------------------- readers
def desi_outcome(clean: dict, coadd: Path, redrock: Path, bad: Path, which: str) -> str:
    from galclip.data.desi import REDSHIFT_RANGE, read_desi_spectra
    from galclip.data.format import DatasetError
    from galclip.data.readers import RejectLog

    try:
        batch, rejects = read_desi_spectra(coadd, [redrock], rejects=RejectLog(strict=False))
    except DatasetError as e:
        return "error" if bad.name in str(e) else "WRONG: error not naming the file"
    except Exception:  # noqa: BLE001 - counted: the campaign's point
        return "TRACEBACK: " + traceback.format_exc(limit=1).splitlines()[-1][:100]
    if rejects.items:                # left out and reported: never silent
        if any(bad.name in r.file for r in rejects.items):
            return "reject naming the corrupted file"
        return f"reject of the object ({rejects.items[0].reason.split(':')[0]})"
    if not batch or any(not np.array_equal(batch[k], clean[k]) for k in EXACT):
        return "WRONG: data differ"
    if batch["redshift"][0] == clean["redshift"][0]:
        return "same"
    lo, hi = REDSHIFT_RANGE
    z = float(batch["redshift"][0])
    if which == "redrock" and np.isfinite(z) and lo <= z <= hi:
        return "undetectable (redrock has no checksum; Z plausible)"
    return "WRONG: redshift"


def desi_campaign(which: str, n: int, seed: int, tmp: Path, deadline: float) -> dict[str, int]:
    from galclip.data.desi import read_desi_spectra
    from galclip.testing.corrupt import byte_variants

    src = {"coadd": REAL / f"coadd-{TAG}.fits", "redrock": REAL / f"redrock-{TAG}.fits"}
    clean, _ = read_desi_spectra(src["coadd"], [src["redrock"]])
    files = {k: tmp / f"{which}-{v.name}" for k, v in src.items()}
    for k, v in src.items():
        shutil.copy(v, files[k])
    tally: dict[str, int] = {}
    for _, blob in byte_variants(src[which].read_bytes(), np.random.default_rng(seed), n):
        if time.time() > deadline:
            tally["(not run: time budget)"] = tally.get("(not run: time budget)", 0) + 1
            continue
        files[which].write_bytes(blob)
        out = desi_outcome(clean, files["coadd"], files["redrock"], files[which], which)
        tally[out] = tally.get(out, 0) + 1
    return tally


def _small_dataset(root: Path) -> Path:
    from galclip import conventions as C
    from galclip.data import Provenance, shard_name, write_manifest, write_shard

    root.mkdir(parents=True)
    entries = []
    for i in range(2):
        rng = np.random.default_rng(i)
        n = 6
        entries.append(write_shard(root / shard_name(i), {
            "object_id": np.arange(n * i, n * i + n, dtype=np.int64),
            "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 10, n),
            "redshift": rng.uniform(0.01, 0.6, n).astype(np.float32),
            "image": rng.normal(size=(n, *C.IMAGE_SHAPE)).astype(np.float32),
            "spectrum_flux": rng.normal(size=(n, C.N_WAVE)).astype(np.float32),
            "spectrum_ivar": rng.uniform(0.5, 2, size=(n, C.N_WAVE)).astype(np.float32)}))
    write_manifest(root, entries, Provenance(command="benchmarks/reliability.py"))
    return root


def _read_all(path: Path) -> dict[str, np.ndarray]:
    from galclip.data import open_dataset

    ds = open_dataset(path, verify=False)
    return ds.read_columns(["object_id", "ra", "redshift", "image", "spectrum_flux"])


def _mutate_manifest(m: dict, rng: np.random.Generator) -> dict:
    junk = [None, -1, 0, 1.5, "", ".", "../x", "/etc/hostname", [], {}, [1, 2], True, "x" * 300]
    m = copy.deepcopy(m)
    node, key = m, ["format", "version", "n_rows", "shards", "columns"][int(rng.integers(5))]
    while isinstance(node[key], (dict, list)) and node[key] and rng.random() < 0.7:
        node = node[key]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = keys[int(rng.integers(len(keys)))]
    if rng.random() < 0.3 and isinstance(node, dict):
        node.pop(key)
    elif rng.random() < 0.2 and isinstance(node, list):
        node.append(copy.deepcopy(node[0]))        # an entry listed twice
    else:
        node[key] = junk[int(rng.integers(len(junk)))]
    return m


def dataset_campaign(n: int, seed: int, tmp: Path, deadline: float) -> dict[str, int]:
    from galclip.data.format import MANIFEST, DatasetError, validate_dataset
    from galclip.testing.corrupt import byte_variants

    clean_dir = _small_dataset(tmp / "clean")
    clean = _read_all(clean_dir)
    manifest = json.loads((clean_dir / MANIFEST).read_text())
    shard = (clean_dir / "part-00001.parquet").read_bytes()
    rng = np.random.default_rng(seed)
    work = tmp / "work"
    shutil.copytree(clean_dir, work)
    tally: dict[str, int] = {}
    shard_variants = byte_variants(shard, rng, n)
    for i in range(n):
        if time.time() > deadline:
            tally["(not run: time budget)"] = tally.get("(not run: time budget)", 0) + 1
            continue
        (work / MANIFEST).write_text(json.dumps(manifest))
        (work / "part-00001.parquet").write_bytes(shard)
        if i % 2:
            (work / MANIFEST).write_text(json.dumps(_mutate_manifest(manifest, rng)))
        else:
            (work / "part-00001.parquet").write_bytes(next(shard_variants)[1])
        try:
            validate_dataset(work, content=True)
            got = _read_all(work)
            same = all(np.array_equal(got[k], clean[k], equal_nan=True) for k in clean)
            out = "valid and identical" if same else "WRONG: valid but different"
        except DatasetError:
            out = "error"
        except Exception:  # noqa: BLE001 - counted
            out = "TRACEBACK: " + traceback.format_exc(limit=1).splitlines()[-1][:100]
        tally[out] = tally.get(out, 0) + 1
    return tally


def reader_outcome(fmt: str, clean: dict, bad: Path, injected: bool) -> str:
    """What a reader made of a corrupted copy ``bad`` of a clean file (lenient RejectLog).
    ``injected``: a value variant (one impossible value), whose row must not come back."""
    from galclip.data.format import DatasetError
    from galclip.data.readers import RejectLog
    from galclip.testing.examples import implausible, read_example

    rejects = RejectLog(strict=False)
    try:
        got = read_example(fmt, bad, rejects)
    except DatasetError as e:
        return "error" if bad.name in str(e) else "WRONG: error not naming the file"
    except Exception:  # noqa: BLE001 - counted: the campaign's point
        return "TRACEBACK: " + traceback.format_exc(limit=1).splitlines()[-1][:100]
    if rejects.items:
        if all(bad.name in r.file and r.field for r in rejects.items):
            return "reject naming file and field"
        return "WRONG: reject not naming the file"
    if got.keys() == clean.keys() and all(
            np.array_equal(got[k], clean[k], equal_nan=got[k].dtype.kind == "f")
            for k in clean if k != "source"):
        return "same"
    if not injected and got and implausible(got) is None:
        return "undetectable (no checksum in the format; every value possible)"
    return f"WRONG: {implausible(got) or 'data differ'}"[:120]


def reader_campaign(fmt: str, n: int, seed: int, tmp: Path, deadline: float) -> dict[str, int]:
    """Half seeded byte corruptions, half one impossible value (corrupt.value_variants)."""
    from galclip.data.readers import RejectLog
    from galclip.testing.corrupt import byte_variants, value_variants
    from galclip.testing.examples import field_shapes, read_example, set_value, write_example

    src = write_example(fmt, tmp / f"clean-{fmt}.{'fits' if fmt == 'cutout' else 'h5'}")
    clean = read_example(fmt, src, RejectLog(strict=True))
    bad = tmp / f"bad-{src.name}"
    rng = np.random.default_rng(seed)
    blobs = byte_variants(src.read_bytes(), rng, n - n // 2)
    values = value_variants(field_shapes(fmt, src), rng, n // 2)
    tally: dict[str, int] = {}
    for i in range(n):
        if time.time() > deadline:
            tally["(not run: time budget)"] = tally.get("(not run: time budget)", 0) + 1
            continue
        if i % 2:
            _, field, index, value = next(values)
            shutil.copy(src, bad)
            set_value(fmt, bad, field, index, value)
        else:
            bad.write_bytes(next(blobs)[1])
        out = reader_outcome(fmt, clean, bad, injected=bool(i % 2))
        tally[out] = tally.get(out, 0) + 1
    return tally


# ----------------------------------------------------------------------------- server
def _prepare_server(tmp: Path) -> tuple[Path, Path, Path, np.ndarray]:
    import torch

    from galclip.data import Provenance, shard_name, write_manifest, write_shard
    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP, save_model
    from galclip.search.catalog import build_catalog
    from galclip.search.index import build_index

    data = tmp / "data"
    data.mkdir()
    entries = []
    for i in range(4):
        src = _small_dataset(tmp / f"part{i}")
        rows = _read_all(src)
        rows = {k: v for k, v in rows.items()}
        rows["object_id"] = rows["object_id"] + 1000 * i
        rows["dec"] = np.zeros(len(rows["ra"]))
        rows["spectrum_ivar"] = np.ones_like(rows["spectrum_flux"])
        entries.append(write_shard(data / shard_name(i), rows))
        shutil.rmtree(src)
    write_manifest(data, entries, Provenance(command="benchmarks/reliability.py"))
    torch.manual_seed(0)
    model = GalaxyCLIP(create_encoder("image-nano", depth=1),
                       create_encoder("spectrum-nano", depth=1), embed_dim=8)
    model_path = save_model(model, tmp / "tiny.safetensors")
    cat = tmp / "catalog"
    build_catalog(model, data, cat, model_path=model_path, progress=False)
    for m in ("image", "spectrum"):
        build_index(cat, m, kind="flat", verbose=False)
    ids = np.concatenate([np.arange(12) + 1000 * i for i in range(4)])
    return cat, data, model_path, ids


def _upload_blobs(tmp: Path) -> dict[str, bytes]:
    import io

    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.random.default_rng(0).normal(size=(3, 152, 152)).astype(np.float32)
                    ).writeto(buf)
    good = buf.getvalue()
    hdr = fits.PrimaryHDU(np.zeros((1, 1, 1), np.float32)).header
    hdr["NAXIS1"], hdr["NAXIS2"], hdr["NAXIS3"] = 10000, 10000, 3
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((3, 200, 200), np.float32))]
                 ).writeto(buf)
    bomb = buf.getvalue()
    for i, (old, new) in enumerate(((200, 10000), (200, 10000)), 1):
        bomb = bomb.replace(f"ZNAXIS{i} = {old:>20}".encode(), f"ZNAXIS{i} = {new:>20}".encode())
    coadd = (REAL / f"coadd-{TAG}.fits").read_bytes()
    return {"good": good, "huge": hdr.tostring().encode() + bytes(2880), "bomb": bomb,
            "truncated-coadd": coadd[:300_000], "garbage": b"SIMPLE  = nonsense" * 400,
            "too-large": good * 20}


NORMAL = ("search", "search-where", "search-cross", "object", "info", "spectrum", "png")


def _request_plan(n: int, ids: np.ndarray, blobs: dict[str, bytes], seed: int,
                  only: tuple[str, ...] = ()) -> list[tuple]:
    """(kind, method, url, params, files/data, expected statuses) for n requests."""
    from galclip.testing.corrupt import byte_variants

    rng = np.random.default_rng(seed)
    fuzzed = byte_variants(blobs["good"], rng, n)
    kinds = ["search"] * 30 + ["search-where"] * 10 + ["search-cross"] * 8 + ["object"] * 8 + \
        ["png"] * 5 + ["spectrum"] * 5 + ["info"] * 4 + ["where-40k"] * 4 + \
        ["where-junk"] * 4 + ["unknown-id"] * 3 + ["bad-k"] * 3 + ["upload-good"] * 4 + \
        ["upload-fuzzed"] * 4 + ["upload-huge", "upload-bomb", "upload-truncated-coadd",
                                 "upload-garbage", "upload-too-large"] * 1
    kinds = [k for k in kinds if k in only] if only else kinds
    plan = []
    for _ in range(n):
        kind = kinds[int(rng.integers(len(kinds)))]
        oid = int(ids[int(rng.integers(len(ids)))])
        plan.append(_one_request(kind, oid, rng, blobs, fuzzed))
    return plan


def _one_request(kind: str, oid: int, rng, blobs, fuzzed) -> tuple:
    junk = "".join(chr(int(c)) for c in rng.integers(32, 127, size=int(rng.integers(1, 300))))
    get = {
        "search": ({"id": oid, "k": 10}, {200}),
        "search-where": ({"id": oid, "k": 10, "where": "redshift > 0.3 and ra < 300"}, {200}),
        "search-cross": ({"id": oid, "k": 10, "to": "spectrum"}, {200}),
        "where-40k": ({"id": oid, "where": "redshift > " + "1" * 40_000 + "!"}, {400}),
        "where-junk": ({"id": oid, "where": junk + " ?"}, {400}),
        "unknown-id": ({"id": 999_999_999}, {404}),
        "bad-k": ({"id": oid, "k": 0}, {422}),
    }
    if kind in get:
        return kind, "GET", "/api/search", get[kind][0], None, get[kind][1]
    paths = {"object": f"/api/objects/{oid}", "png": f"/api/objects/{oid}/image.png",
             "spectrum": f"/api/objects/{oid}/spectrum", "info": "/api/info"}
    if kind in paths:
        return kind, "GET", paths[kind], {}, None, {200}
    name = kind.removeprefix("upload-")
    blob = next(fuzzed)[1] if name == "fuzzed" else blobs[name]
    expect = {"good": {200}, "fuzzed": {200, 400, 413}, "bomb": {413}, "too-large": {413}}
    return kind, "POST", "/api/search/upload", {}, blob, expect.get(name, {400})


async def _drive(port: int, plan: list[tuple], concurrency: int, client: str = "raw"
                 ) -> list[tuple]:
    """Run ``plan`` at ``concurrency``; (kind, status, status expected?, seconds) per request."""
    drive = _drive_raw if client == "raw" else _drive_httpx
    return await drive(port, plan, concurrency)


async def _drive_httpx(port: int, plan: list[tuple], concurrency: int) -> list[tuple]:
    """The first load generator: httpx's async client (``--client httpx``)."""
    import httpx

    sem = asyncio.Semaphore(concurrency)
    results: list[tuple] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                 limits=limits) as client:
        async def one(item):
            kind, method, url, params, blob, expect = item
            async with sem:
                t0 = time.perf_counter()
                try:
                    if method == "GET":
                        r = await client.get(url, params=params)
                    else:
                        r = await client.post(url, files={"file": ("q.fits", blob)},
                                              data={"kind": "image"})
                    status = r.status_code
                except httpx.HTTPError as e:
                    status = f"client error {type(e).__name__}"
                results.append((kind, status, status in expect, time.perf_counter() - t0))
        await asyncio.gather(*(one(item) for item in plan))
    return results


# The lean load generator (the default). httpx spent 5.5 ms of CPU per request of this mix,
# more than the server's 2-4 ms, on the same 2 cores (issue 15, RESULTS.md), so the campaign
# measured its own client as much as the server. This one is ``concurrency`` workers, each on
# its own HTTP/1.1 keep-alive connection (asyncio streams), sending pre-encoded request bytes
# and reading only the status line, Content-Length / chunked framing and Connection: close.
# No retries: a connection closed before its response is counted as a client error, as httpx
# did.
BOUNDARY = b"galclip-reliability-boundary"


def _raw_request(port: int, method: str, url: str, params: dict, blob: bytes | None) -> bytes:
    from urllib.parse import urlencode

    host = b"Host: 127.0.0.1:%d\r\n" % port
    if method == "GET":
        target = url + ("?" + urlencode(params) if params else "")
        return b"GET " + target.encode() + b" HTTP/1.1\r\n" + host + b"\r\n"
    body = b"".join((
        b"--", BOUNDARY, b'\r\ncontent-disposition: form-data; name="file"; filename="q.fits"'
        b"\r\ncontent-type: application/octet-stream\r\n\r\n", blob,
        b"\r\n--", BOUNDARY, b'\r\ncontent-disposition: form-data; name="kind"\r\n\r\nimage'
        b"\r\n--", BOUNDARY, b"--\r\n"))
    return (b"POST " + url.encode() + b" HTTP/1.1\r\n" + host +
            b"content-type: multipart/form-data; boundary=" + BOUNDARY +
            b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, server will close) of one response, its body read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = None, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)       # the chunk and its CRLF
            if size == 0:
                break                                # (no trailers from uvicorn)
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()                          # framed by the connection's end
        close = True
    return status, close


async def _drive_raw(port: int, plan: list[tuple], concurrency: int) -> list[tuple]:
    results: list[tuple] = []
    todo = iter(plan)

    async def worker():
        reader = writer = None
        for kind, method, url, params, blob, expect in todo:
            payload = _raw_request(port, method, url, params, blob)
            t0 = time.perf_counter()
            reused = writer is not None
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                                   limit=2**20)
                writer.write(payload)
                try:
                    await writer.drain()
                except ConnectionError:      # the server may answer early and close (413)
                    pass
                status, close = await asyncio.wait_for(_read_response(reader), 60)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError, IndexError) as e:
                status = (f"client error {type(e).__name__} "
                          f"({'reused' if reused else 'new'} connection)")
                close = True
            results.append((kind, status, status in expect, time.perf_counter() - t0))
            if close and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def _slow_client(port: int, payload: bytes, trickle: bool) -> tuple[bool, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    got = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), timeout=1.0)
        except ConnectionError:     # a reset: no 408 read (the server's lingering close prevents it)
            break
        except TimeoutError:
            if trickle:
                try:
                    writer.write(b"x")
                    await writer.drain()
                except (ConnectionError, OSError):
                    break
            if time.perf_counter() - t0 > 120:
                break
            continue
        if not chunk:
            break
        got += chunk
    writer.close()
    return got.startswith(b"HTTP/1.1 408"), time.perf_counter() - t0


async def _campaign(port: int, plan: list[tuple], concurrency: int, slow: int,
                    client: str) -> tuple:
    headers = b"GET /api/info HTTP/1.1\r\nhost: x\r\n"
    body = (b"POST /api/search/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n"
            b"content-type: multipart/form-data; boundary=b\r\n\r\n--b\r\n")
    slow_tasks = [asyncio.create_task(_slow_client(port, headers if i % 3 == 0 else body,
                                                   trickle=i % 3 != 0)) for i in range(slow)]
    t0, cpu0 = time.perf_counter(), time.process_time()
    results = await _drive(port, plan, concurrency, client)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return results, wall, cpu, await asyncio.gather(*slow_tasks)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process and its live children (``--workers``), all
    their threads (Linux /proc)."""
    import os

    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(d.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_server(cat: Path, data: Path, port: int, read_timeout: float, workers: int = 1,
                 upload_threads: int = 1):
    """`galclip serve` of the campaign's catalog in a child process (not yet answering)."""
    return subprocess.Popen([sys.executable, "-m", "galclip.cli", "serve", str(cat), "--data",
                             str(data), "--port", str(port), "--read-timeout", str(read_timeout),
                             "--max-upload-mb", "2", "--cache-mb", "64", "--workers", str(workers),
                             "--upload-threads", str(upload_threads)],
                            stdout=subprocess.DEVNULL)


def server_campaign(n: int, concurrency: int, slow: int, read_timeout: float, seed: int,
                    tmp: Path, client: str = "raw", workers: int = 1, upload_threads: int = 1) -> dict:
    import socket

    cat, data, model, ids = _prepare_server(tmp)
    blobs = _upload_blobs(tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = start_server(cat, data, port, read_timeout, workers, upload_threads)
    try:
        _wait_up(port)
        warm = _request_plan(200, ids, blobs, seed + 1)
        asyncio.run(_drive(port, warm, concurrency, client))
        server0 = _cpu_s(child.pid)
        results, wall, cpu, slow_res = asyncio.run(_campaign(
            port, _request_plan(n, ids, blobs, seed), concurrency, slow, client))
        server_cpu = _cpu_s(child.pid) - server0
        sequential = asyncio.run(_drive(port, _request_plan(500, ids, blobs, seed + 2, NORMAL), 1,
                                        client))
    finally:
        child.terminate()
        child.wait(10)
    return {"results": results, "wall": wall, "slow": slow_res, "sequential": sequential,
            "client": client, "client_cpu": cpu, "server_cpu": server_cpu, "workers": workers}


def _rss_mb(pid: int) -> float:
    """Resident memory (MB) of a process and its live children (``--workers``), from /proc."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if int(d.name) == pid or ppid == pid:
                rss = [ln for ln in (d / "status").read_text().splitlines() if ln.startswith("VmRSS")]
                total += int(rss[0].split()[1]) if rss else 0
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024


def soak_campaign(n: int, concurrency: int, read_timeout: float, seed: int, tmp: Path,
                  workers: int, chunk: int = 10_000) -> dict:
    """``n`` requests in chunks of ``chunk``; RSS after the first chunk and after each."""
    import socket

    cat, data, model, ids = _prepare_server(tmp)
    blobs = _upload_blobs(tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = start_server(cat, data, port, read_timeout, workers)
    results, rss, t0 = [], [], time.perf_counter()
    try:
        _wait_up(port)
        cpu0 = time.process_time()
        server0 = _cpu_s(child.pid)
        for i in range(0, n, chunk):
            plan = _request_plan(min(chunk, n - i), ids, blobs, seed + i)
            results += asyncio.run(_drive(port, plan, concurrency))
            rss.append((len(results), _rss_mb(child.pid)))
            print(f"  soak: {len(results)} requests, server RSS {rss[-1][1]:.0f} MB", flush=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server_cpu = _cpu_s(child.pid) - server0
        sequential = asyncio.run(_drive(port, _request_plan(500, ids, blobs, seed + 2, NORMAL), 1))
    finally:
        child.terminate()
        child.wait(10)
    return {"results": results, "wall": wall, "slow": [], "sequential": sequential, "client": "raw",
            "client_cpu": cpu, "server_cpu": server_cpu, "workers": workers, "rss": rss}


def _wait_up(port: int) -> None:
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


# ----------------------------------------------------------------------------- report
def print_tally(title: str, tally: dict[str, int]) -> None:
    print(f"\n{title}: {sum(tally.values())} variants")
    for k, v in sorted(tally.items(), key=lambda kv: -kv[1]):
        print(f"  {v:6d}  {k}")


def print_server(res: dict, concurrency: int, read_timeout: float) -> None:
    rows = res["results"]
    by_kind: dict[str, dict] = {}
    for kind, status, ok, dt in rows:
        d = by_kind.setdefault(kind, {"n": 0, "unexpected": 0, "statuses": {}, "ms": []})
        d["n"] += 1
        d["unexpected"] += not ok
        d["statuses"][status] = d["statuses"].get(status, 0) + 1
        d["ms"].append(dt * 1e3)
    n5xx = sum(1 for _, s, _, _ in rows if isinstance(s, int) and s >= 500)
    normal = [dt * 1e3 for k, s, ok, dt in rows if k in NORMAL]
    seq = [dt * 1e3 for *_, dt in res["sequential"]]
    print(f"\nserver ({res['workers']} worker process{'es' if res['workers'] > 1 else ''}): "
          f"{len(rows)} requests at concurrency {concurrency} in {res['wall']:.1f} s "
          f"({len(rows) / res['wall']:.0f} req/s); 5xx: {n5xx}; unexpected status: "
          f"{sum(not ok for _, _, ok, _ in rows)}")
    print(f"  CPU per request during it: client ({res['client']}) "
          f"{res['client_cpu'] / len(rows) * 1e3:.2f} ms, server "
          f"{res['server_cpu'] / len(rows) * 1e3:.2f} ms (slow clients included)")
    print(f"  normal requests (searches, objects, images, spectra, info): n={len(normal)}, "
          f"p50 {np.percentile(normal, 50):.1f} ms, p99 {np.percentile(normal, 99):.1f} ms")
    print(f"  the same kinds one at a time (warm, concurrency 1): n={len(seq)}, "
          f"p50 {np.percentile(seq, 50):.1f} ms, p99 {np.percentile(seq, 99):.1f} ms, "
          f"unexpected status {sum(not ok for _, _, ok, _ in res['sequential'])}")
    print("  | kind | n | statuses | unexpected | p50 ms | p99 ms |")
    print("  |---|---|---|---|---|---|")
    for kind, d in sorted(by_kind.items()):
        st = ", ".join(f"{k}: {v}" for k, v in sorted(d["statuses"].items(), key=str))
        print(f"  | {kind} | {d['n']} | {st} | {d['unexpected']} | "
              f"{np.percentile(d['ms'], 50):.1f} | {np.percentile(d['ms'], 99):.1f} |")
    slow = res["slow"]
    if slow:
        got = sum(ok for ok, _ in slow)
        print(f"  slow clients: {len(slow)} (1/3 unfinished headers, 2/3 bodies at 1 byte/s), "
              f"{got} got 408; time to 408: max {max(t for _, t in slow):.1f} s "
              f"(read timeout {read_timeout:g} s)")


def run_readers(args, tmp: Path, deadline: float) -> None:
    from galclip.testing.examples import FORMATS

    def wanted(name: str) -> bool:
        return args.formats is None or name in args.formats

    for which, seed in (("coadd", args.seed), ("redrock", args.seed + 1)):
        if wanted(f"desi-{which}"):
            (tmp / which).mkdir()
            print_tally(f"desi-{which}", desi_campaign(which, args.variants, seed, tmp / which,
                                                       deadline))
    if wanted("dataset"):
        print_tally("dataset (manifest + shard)", dataset_campaign(
            args.variants, args.seed + 2, tmp / "ds", deadline))
    for k, fmt in enumerate(FORMATS):
        if wanted(fmt):
            (tmp / fmt).mkdir()
            print_tally(f"{fmt} (bytes + impossible values)", reader_campaign(
                fmt, args.variants, args.seed + 10 + k, tmp / fmt, deadline))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", type=int, default=1000, help="corrupted variants per reader")
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--slow-clients", type=int, default=300)
    p.add_argument("--read-timeout", type=float, default=5.0)
    p.add_argument("--budget-s", type=float, default=1200, help="time budget for the readers")
    p.add_argument("--server-only", action="store_true", help="skip the reader campaigns")
    p.add_argument("--readers-only", action="store_true", help="skip the server campaign")
    p.add_argument("--formats", nargs="*", default=None,
                   help="only these reader campaigns (desi-coadd, desi-redrock, dataset, "
                        "cutout, stein, mmu-legacysurvey, mmu-desi, astroclip-h5, provabgs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--soak", type=int, default=0, metavar="N",
                   help="server soak: N requests, RSS after the first 10,000 and at the end")
    p.add_argument("--workers", type=int, default=1, help="galclip serve --workers")
    p.add_argument("--upload-threads", type=int, default=1, help="galclip serve --upload-threads")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw",
                   help="load generator: raw asyncio streams (lean) or httpx (the first one)")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    deadline = time.time() + args.budget_s
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        if not args.server_only:
            run_readers(args, tmp, deadline)
            print(f"readers: {time.perf_counter() - t0:.0f} s")
        if args.readers_only:
            return 0
        (tmp / "server").mkdir()
        if args.soak:
            res = soak_campaign(args.soak, args.concurrency, args.read_timeout, args.seed + 3,
                                tmp / "server", args.workers)
            print_server(res, args.concurrency, args.read_timeout)
            first, last = res["rss"][0][1], res["rss"][-1][1]
            print(f"  RSS after {res['rss'][0][0]} requests {first:.0f} MB, after {res['rss'][-1][0]} "
                  f"{last:.0f} MB ({(last - first) / first * 100:+.1f} %)")
            return 0
        res = server_campaign(args.requests, args.concurrency, args.slow_clients,
                              args.read_timeout, args.seed + 3, tmp / "server", args.client,
                              args.workers, args.upload_threads)
        print_server(res, args.concurrency, args.read_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
