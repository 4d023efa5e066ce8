"""Hostile requests against the explorer: each gets a 4xx quickly, none a 500 or a hang."""
from __future__ import annotations

import io
import socket
import time

import numpy as np
import pytest

from search_fixtures import build_all, fits_bytes_image, serve_in_thread


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from fastapi.testclient import TestClient

    from galclip.data import open_dataset
    from galclip.search.api import Catalog
    from galclip.serve.server import create_app

    built = build_all(tmp_path_factory.mktemp("hostile"))
    cat = Catalog(built.catalog, model=built.model)
    app = create_app(catalog=cat, data_dir=built.data, max_upload_bytes=1_000_000,
                     cache_bytes=3 * 2**20)
    return TestClient(app), app, open_dataset(built.data)


def _post(client, blob, kind="image", name="q.fits"):
    return client.post("/api/search/upload", files={"file": (name, blob)}, data={"kind": kind})


def test_where_parser_is_linear_and_capped(env, monkeypatch):
    import galclip.search.filters as filters

    client, _, _ = env
    oid = client.get("/api/info").json()["example_ids"][0]
    evil = "redshift > " + "1" * 40_000 + "!"
    t0 = time.perf_counter()
    r = client.get("/api/search", params={"id": oid, "where": evil})
    assert r.status_code == 400 and "limit 2000" in r.text
    r = client.post("/api/search/upload", files={"file": ("q.fits", b"x")},
                    data={"kind": "image", "where": "z" * 900_000})
    assert r.status_code in (400, 413)
    monkeypatch.setattr(filters, "MAX_WHERE_CHARS", 10**7)
    for text in (evil, "0" * 200_000 + " < " * 50_000, "'" + "a" * 200_000, "1e" * 100_000):
        with pytest.raises(filters.FilterError):
            filters.parse_where(text)
    # linear: ~1 s here; the quadratic parser took 37 s for the first input alone and would take
    # ~15 minutes for the 200,000-character ones (a bound no loaded machine comes near)
    assert time.perf_counter() - t0 < 120


def _declared_huge(shape=(3, 10000, 10000)) -> bytes:
    """A real FITS header declaring a huge float32 cube, followed by one block of data."""
    from astropy.io import fits

    hdr = fits.PrimaryHDU(np.zeros((1, 1, 1), np.float32)).header
    for i, n in enumerate(reversed(shape), 1):
        hdr[f"NAXIS{i}"] = n
    return hdr.tostring().encode() + bytes(2880)


def _compressed(shape=(3, 200, 200), fake_shape=None) -> bytes:
    """A tile-compressed cube of zeros; with ``fake_shape`` its ZNAXISn cards are rewritten."""
    from astropy.io import fits

    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros(shape, np.float32))]).writeto(buf)
    blob = buf.getvalue()
    if fake_shape:
        for i, n in enumerate(reversed(fake_shape), 1):
            old = f"ZNAXIS{i} = {shape[::-1][i - 1]:>20}".encode()
            assert old in blob
            blob = blob.replace(old, f"ZNAXIS{i} = {n:>20}".encode())
    return blob


def test_declared_sizes_are_checked_before_allocating(env, real_data, monkeypatch):
    import galclip.serve.limits as limits

    client, _, ds = env
    good = fits_bytes_image(ds[0]["image"])
    r = _post(client, _declared_huge())
    assert r.status_code == 400 and "declares 1200000000 bytes" in r.text
    r = _post(client, _compressed(fake_shape=(3, 10000, 10000)))
    assert r.status_code == 413 and "decompress to 1200000000 bytes" in r.text
    monkeypatch.setattr(limits, "MAX_DECOMPRESSED_BYTES", 100_000)   # a genuine small bomb
    r = _post(client, _compressed())
    assert r.status_code == 413 and "480000" in r.text
    assert _post(client, good).status_code == 200


def test_unparsable_size_card_is_a_400(env):
    """Found by benchmarks/reliability.py: astropy parses a card lazily (VerifyError)."""
    client, _, ds = env
    blob = bytearray(fits_bytes_image(ds[0]["image"]))
    i = blob.find(b"NAXIS2  =")
    blob[i + 25:i + 30] = b"1x2y3"
    r = _post(client, bytes(blob))
    assert r.status_code == 400 and "NAXIS2" in r.text


def test_coadd_without_an_arm_is_a_400(env, real_data):
    from astropy.io import fits

    client, _, _ = env
    with fits.open(real_data / "desi" / "coadd-4-80613-thru20210324.fits") as h:
        del h["B_WAVELENGTH"]
        buf = io.BytesIO()
        h.writeto(buf)
    r = _post(client, buf.getvalue(), kind="spectrum")
    assert r.status_code == 400 and "B_WAVELENGTH" in r.text


@pytest.mark.slow
def test_seeded_upload_fuzz_gets_200_or_4xx_never_500(env, real_data):
    """TestClient re-raises any server exception, so a 500 fails this test."""
    client, _, ds = env
    rng = np.random.default_rng(5)
    seeds = {"image": fits_bytes_image(ds[1]["image"]),
             "spectrum": (real_data / "desi" / "coadd-4-80613-thru20210324.fits").read_bytes()}
    tally: dict[int, int] = {}
    for i in range(60):
        kind = "image" if i % 2 else "spectrum"
        b = bytearray(seeds[kind])
        if i % 3 == 0:
            b = b[: int(rng.integers(1, len(b)))]
        else:
            hi = min(len(b), 40_000)              # headers: where a flip changes the layout
            for pos in rng.integers(0, hi, size=1 + i % 5):
                b[int(pos)] ^= int(rng.integers(1, 256))
        r = _post(client, bytes(b), kind=kind)
        assert r.status_code in (200, 400, 413), (i, r.status_code, r.text)
        tally[r.status_code] = tally.get(r.status_code, 0) + 1
    assert tally.get(400, 0) >= 20


def test_cache_budget_bounds_the_dataset_cache(env):
    client, app, _ = env
    for oid in client.get("/api/info").json()["example_ids"]:
        assert client.get(f"/api/objects/{oid}/spectrum").status_code == 200
        assert client.get(f"/api/objects/{oid}/image.png").status_code == 200
    ds = app.state.dataset_access.dataset
    assert ds._cache_bytes == 3 * 2**20
    assert 0 < ds._cached_bytes <= 3 * 2**20 or len(ds._cache) == 1


@pytest.fixture(scope="module")
def live(env):
    from galclip.serve.protocol import timed_protocol

    _, app, _ = env
    yield from serve_in_thread(app, log_level="error", http=timed_protocol(0.6))


def _raw(port: int, payload: bytes, wait: float = 20.0) -> tuple[bytes, float]:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(wait)
    t0 = time.perf_counter()
    s.sendall(payload)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except TimeoutError:
        pass
    s.close()
    return got, time.perf_counter() - t0


@pytest.mark.slow
def test_slow_clients_are_timed_out_with_408(live):
    ok, _ = _raw(live, b"GET /api/info HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")
    for partial in (b"GET /api/info HTTP/1.1\r\nhost: x\r\n",              # headers unfinished
                    b"POST /api/search/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n"
                    b"content-type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"):  # body
        got, dt = _raw(live, partial)
        # the 408 itself shows the cut-off (without it: nothing until the client's 20 s wait)
        assert got.startswith(b"HTTP/1.1 408") and dt > 0.3, (partial, got, dt)   # not at once
