"""The explorer's JSON API through FastAPI's TestClient: searches, objects, images, bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest

from search_fixtures import build_all, fits_bytes_image, fits_bytes_spectrum


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from fastapi.testclient import TestClient

    from galclip.data import open_dataset
    from galclip.search.api import Catalog
    from galclip.serve.server import create_app

    built = build_all(tmp_path_factory.mktemp("server"))
    cat = Catalog(built.catalog, model=built.model)
    app = create_app(catalog=cat, data_dir=built.data, max_upload_bytes=1_000_000)
    return TestClient(app), cat, open_dataset(built.data)


def test_info_and_search_by_id_in_and_across_modalities(env):
    client, cat, _ = env
    info = client.get("/api/info").json()
    assert info["n_rows"] == 90 and info["modalities"] == ["image", "spectrum"]
    assert "redshift" in info["filterable_columns"] and info["has_data"]
    oid = info["example_ids"][1]
    res = client.get("/api/search", params={"id": oid, "k": 5}).json()
    assert res["query"]["from"] == res["query"]["to"] == "image"
    assert len(res["neighbours"]) == 5 and oid not in [n["object_id"] for n in res["neighbours"]]
    cross = client.get("/api/search", params={"id": oid, "from": "image", "to": "spectrum", "k": 5}).json()
    assert cross["query"]["to"] == "spectrum"
    assert cross["neighbours"] == cat.search(id=oid, to="spectrum", k=5).to_dict()["neighbours"]
    filt = client.get("/api/search", params={"id": oid, "k": 8, "where": "redshift < 0.3"}).json()
    assert len(filt["neighbours"]) == 8 and all(n["redshift"] < 0.3 for n in filt["neighbours"])


def test_bad_requests_get_4xx_with_a_message(env):
    client, _, _ = env
    oid = int(client.get("/api/info").json()["example_ids"][0])
    cases = [
        ("/api/search", {"id": 999_999}, 404, "not in catalog"),
        ("/api/search", {"id": oid, "where": "redshift >> 2"}, 400, "cannot parse"),
        ("/api/search", {"id": oid, "where": "import os"}, 400, "cannot parse"),
        ("/api/search", {"id": oid, "k": 0}, 422, "k must be"),
        ("/api/search", {"id": oid, "to": "radio"}, 422, ""),
        ("/api/search", {"id": "abc"}, 422, ""),
        ("/api/objects/123456789", {}, 404, "not in catalog"),
        ("/api/objects/..%2F..%2Fetc%2Fpasswd", {}, 404, ""),
        ("/static/..%2F..%2Fcatalog.py", {}, 404, ""),
    ]
    for url, params, status, text in cases:
        r = client.get(url, params=params)
        assert r.status_code == status, (url, params, r.text)
        assert text in r.text


def test_object_details_colour_image_and_spectrum(env):
    client, cat, ds = env
    oid = int(cat.meta["object_id"][4])
    props = client.get(f"/api/objects/{oid}").json()
    assert props["object_id"] == oid and props["has_image"] is True
    assert props["redshift"] == pytest.approx(float(cat.meta["redshift"][4]), rel=1e-6)
    r = client.get(f"/api/objects/{oid}/image.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    from PIL import Image

    im = Image.open(io.BytesIO(r.content))
    assert im.size == (152, 152) and im.mode == "RGB"
    assert np.asarray(im).std() > 1  # not a blank picture
    spec = client.get(f"/api/objects/{oid}/spectrum", params={"bins": 100}).json()
    assert len(spec["wavelength"]) == len(spec["flux"]) == 100
    z = props["redshift"]
    assert {"[OIII]", "Hβ"} <= {ln["name"] for ln in spec["lines"]} or z > 0.9
    for ln in spec["lines"]:
        assert ln["observed"] == pytest.approx(ln["rest"] * (1 + z), abs=0.1)


def test_upload_cutout_and_spectrum_find_the_object(env):
    client, cat, ds = env
    row = 10
    item = ds[row]
    oid = int(item["object_id"])
    files = {"file": ("cut.fits", fits_bytes_image(item["image"], pad=20), "application/fits")}
    res = client.post("/api/search/upload", files=files, data={"kind": "image", "k": "3"})
    assert res.status_code == 200, res.text
    assert res.json()["neighbours"][0]["object_id"] == oid
    assert res.json()["query"]["file"] == "cut.fits"
    spec = fits_bytes_spectrum(item["spectrum_flux"], item["spectrum_ivar"])
    res = client.post("/api/search/upload", files={"file": ("s.fits", spec)},
                      data={"kind": "spectrum", "to": "spectrum", "k": "3"})
    assert res.status_code == 200, res.text
    if cat.properties(row)["has_spectrum"]:
        assert res.json()["neighbours"][0]["object_id"] == oid


def test_bad_uploads_get_4xx(env):
    client, _, ds = env
    image = ds[0]["image"]
    cases = [
        ({"file": ("x.fits", b"not a fits file at all" * 10)}, {"kind": "image"}, 400, "not a readable FITS"),
        ({"file": ("x.fits", b"")}, {"kind": "image"}, 400, "empty"),
        ({"file": ("x.fits", fits_bytes_image(image[:, :100, :100]))}, {"kind": "image"}, 400,
         "needs at least 152x152"),
        ({"file": ("x.fits", fits_bytes_image(image[:2]))}, {"kind": "image"}, 400,
         "expected 3 planes g, r, z"),
        ({"file": ("x.fits", fits_bytes_image(image))}, {"kind": "spectrum"}, 400, "flux"),
        ({"file": ("x.fits", fits_bytes_image(image))}, {"kind": "radio"}, 422, ""),
        ({"file": ("big.fits", b"\0" * 1_100_000)}, {"kind": "image"}, 413, "too large"),
        ({}, {"kind": "image"}, 422, ""),
    ]
    for files, data, status, text in cases:
        r = client.post("/api/search/upload", files=files, data=data)
        assert r.status_code == status, (data, r.text)
        assert text in r.text


def test_page_and_openapi_are_served(env):
    client, _, _ = env
    page = client.get("/")
    assert page.status_code == 200 and "galclip explorer" in page.text
    assert "http" not in page.text.replace("http://www.w3.org", "")  # no external resources
    assert client.get("/static/app.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/search/upload", "/api/objects/{object_id}/image.png"} <= set(paths)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text  # offline Swagger UI
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_upload_real_desi_coadd_and_band_order_from_header(env, real_data, tmp_path):
    from astropy.io import fits

    from galclip.search.queryfile import read_image_fits

    client, _, ds = env
    coadd = (real_data / "desi" / "coadd-4-80613-thru20210324.fits").read_bytes()
    r = client.post("/api/search/upload", files={"file": ("coadd.fits", coadd)},
                    data={"kind": "spectrum", "to": "image", "k": "4"})
    assert r.status_code == 200, r.text
    q = r.json()["query"]
    familiarity = {k: q[k] for k in ("ood_score", "unfamiliar", "ood_k", "ood_distance",
                                      "ood_check", "neighbour_z", "template_z", "z_tension")
                   if k in q}
    assert q["ood_check"] in ("distance", "distance+redshift")
    assert q == {"file": "coadd.fits", "from": "spectrum", "to": "image", "k": 4, "where": None,
                 "ivar_estimated": False, **familiarity}
    assert len(r.json()["neighbours"]) == 4
    # planes stored z, r, g and labelled so: read back in g, r, z order
    image = ds[3]["image"]
    hdu = fits.PrimaryHDU(image[::-1].copy())
    hdu.header["BANDS"] = "zrg"
    hdu.writeto(tmp_path / "zrg.fits")
    np.testing.assert_array_equal(read_image_fits(tmp_path / "zrg.fits"), image)


def test_uploads_are_parsed_and_embedded_off_the_event_loop(env, monkeypatch):
    """A FITS parse and a model embedding are CPU work: on the event loop they would stall
    every other request (issue 15); they run in the thread pool."""
    import asyncio

    client, cat, ds = env
    seen = []
    embed = type(cat).embed

    def recording_embed(self, *a, **kw):
        try:
            asyncio.get_running_loop()
            seen.append("event loop")
        except RuntimeError:
            seen.append("worker thread")
        return embed(self, *a, **kw)

    monkeypatch.setattr(type(cat), "embed", recording_embed)
    files = {"file": ("cut.fits", fits_bytes_image(ds[3]["image"]), "application/fits")}
    res = client.post("/api/search/upload", files=files, data={"kind": "image", "k": "2"})
    assert res.status_code == 200, res.text
    assert seen == ["worker thread"]
    bad = client.post("/api/search/upload", files={"file": ("x.fits", b"SIMPLE  = nonsense" * 200)},
                      data={"kind": "image"})
    assert bad.status_code == 400  # an HTTPException raised in the pool is still its 4xx


@pytest.mark.parametrize("lanes", [1, 3])
def test_upload_threads_bound_how_many_uploads_are_embedded_at_once(env, monkeypatch, lanes):
    """Uploads wait for one of ``upload_threads`` lanes (issue 15: many embeddings at once in
    the thread pool starve the event loop); the other requests do not wait for them."""
    import asyncio
    import threading
    import time

    import httpx

    from galclip.serve.server import create_app

    _, cat, ds = env
    busy, peak, lock = [0], [0], threading.Lock()
    embed = type(cat).embed

    def slow_embed(self, *a, **kw):
        with lock:
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
        time.sleep(0.1)
        with lock:
            busy[0] -= 1
        return embed(self, *a, **kw)

    monkeypatch.setattr(type(cat), "embed", slow_embed)
    app = create_app(catalog=cat, upload_threads=lanes)
    cut = fits_bytes_image(ds[3]["image"])

    async def run() -> tuple[list[int], int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as c:
            ups = [asyncio.create_task(c.post("/api/search/upload", files={"file": ("c.fits", cut)},
                                              data={"kind": "image", "k": "2"})) for _ in range(6)]
            await asyncio.sleep(0.05)          # the uploads are queued or running now
            info = await c.get("/api/info")    # answered on the loop, not behind the uploads
            done_first = sum(u.done() for u in ups)
            return [info.status_code] + [r.status_code for r in await asyncio.gather(*ups)], done_first

    statuses, done_first = asyncio.run(run())
    assert statuses == [200] * 7
    assert peak[0] == lanes if lanes == 1 else 1 < peak[0] <= lanes
    assert done_first < 6 - lanes  # info did not wait for the queued uploads' turns


def test_upload_threads_must_be_positive(env):
    from galclip.serve.server import create_app

    with pytest.raises(ValueError, match="upload_threads"):
        create_app(catalog=env[1], upload_threads=0)


def test_server_runs_torch_on_one_thread_and_embeds_without_re_eval(tmp_path, env):
    import torch

    from galclip.serve.server import create_app

    _, cat, ds = env
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        create_app(catalog=cat, torch_threads=None)
        assert torch.get_num_threads() == 2  # None leaves the caller's setting
        create_app(catalog=cat)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    z = cat.embed("image", ds[4]["image"])
    assert not cat.model.training
    cat.model.eval = None  # embed no longer walks the modules on every call
    try:
        np.testing.assert_allclose(cat.embed("image", ds[4]["image"]), z, rtol=1e-5, atol=1e-6)
    finally:
        del cat.model.eval


def test_rows_properties_match_properties_row_by_row(env):
    _, cat, _ = env
    rows = [0, 5, 5, 89, 17]
    saved = cat.meta["redshift"][5]
    cat.meta["redshift"][5] = np.nan  # a missing value is None, as in properties()
    try:
        many = cat.rows_properties(rows)
        assert many == [cat.properties(r) for r in rows]
        assert many[1]["redshift"] is None and many[1] == many[2]
        assert all(type(v) in (int, float, bool, str, type(None)) for p in many for v in p.values())
    finally:
        cat.meta["redshift"][5] = saved


def test_small_searches_run_on_the_loop_and_catalog_scans_in_the_thread_pool(env, monkeypatch):
    """A search bounded by k (small catalog, or an approximate index without a where-filter)
    skips the thread pool's hop; one that reads every row of a large catalog does not."""
    import threading

    from fastapi.testclient import TestClient

    from galclip.serve import server

    _, cat, _ = env
    seen = []
    real = cat.search

    def search(**kw):
        seen.append(threading.current_thread().name)
        return real(**kw)

    monkeypatch.setattr(cat, "search", search)
    oid = int(cat.meta["object_id"][3])

    def thread_of(app, **params):
        with TestClient(app) as client:
            loop = client.portal.call(lambda: threading.current_thread().name)
            assert client.get("/api/search", params={"id": oid, **params}).status_code == 200
        return "loop" if seen.pop() == loop else "pool"

    small = server.create_app(catalog=cat)
    assert thread_of(small) == thread_of(small, where="redshift < 0.3") == "loop"
    monkeypatch.setattr(server, "INLINE_ROWS", 10)  # the 90-row catalog is now "large"
    large = server.create_app(catalog=cat)
    assert cat.index("image").kind == "flat"
    assert thread_of(large) == thread_of(large, where="redshift < 0.3") == "pool"
    monkeypatch.setitem(cat.index("image").info, "kind", "ivf")  # an approximate index
    assert thread_of(large) == "loop" and thread_of(large, where="redshift < 0.3") == "pool"


def test_png_cache_keeps_the_most_recent_images():
    from galclip.serve.server import PngCache

    calls = []
    cache = PngCache(lambda oid: calls.append(oid) or {"image": np.ones((3, 8, 8), np.float32)},
                     size=2)
    assert cache.get(1) is None
    a = cache.render(1)
    assert a.startswith(b"\x89PNG") and cache.get(1) == a
    cache.render(2)
    cache.get(1)          # 1 is now the most recent: 2 goes out when 3 comes in
    cache.render(3)
    assert cache.get(2) is None and cache.get(1) == a and calls == [1, 2, 3]


def test_a_decoded_spectrum_is_binned_on_the_loop_one_on_disk_in_the_thread_pool(env, monkeypatch):
    import threading

    from galclip.modalities import MODALITIES

    client, cat, _ = env
    access = client.app.state.dataset_access
    seen = []
    spectrum = MODALITIES["spectrum"]
    real = type(spectrum).draw
    monkeypatch.setattr(type(spectrum), "draw", lambda self, *a, **kw: seen.append(
        threading.current_thread().name) or real(self, *a, **kw))
    oid = int(cat.meta["object_id"][-1])
    with client:
        loop = client.portal.call(lambda: threading.current_thread().name)
        access.dataset._cache.clear()
        assert not access.is_cached(oid)
        first = client.get(f"/api/objects/{oid}/spectrum")
        assert access.is_cached(oid)
        again = client.get(f"/api/objects/{oid}/spectrum")
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert seen[0] != loop and seen[1] == loop
