"""The explorer's new JSON routes through FastAPI's TestClient: cone search, upload preview
(with the fibres of a DESI coadd, TARGETIDs as strings), fibre choice on upload, and the
OpenAPI 3.0 schema the bundled Swagger UI renders."""
from __future__ import annotations

import json

import pytest

from search_fixtures import build_all, fits_bytes_image


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from fastapi.testclient import TestClient

    from galclip.data import open_dataset
    from galclip.search.api import Catalog
    from galclip.serve.server import create_app

    built = build_all(tmp_path_factory.mktemp("astro"))
    cat = Catalog(built.catalog, model=built.model)
    return TestClient(create_app(catalog=cat, data_dir=built.data)), cat, open_dataset(built.data)


def test_cone_route(env):
    client, cat, _ = env
    ra, dec = float(cat.meta["ra"][2]), float(cat.meta["dec"][2])
    r = client.get("/api/cone", params={"ra": ra, "dec": dec, "radius": 1})
    assert r.status_code == 200
    body = r.json()
    assert [n["object_id"] for n in body["neighbours"]] == [int(cat.meta["object_id"][2])]
    assert body["query"]["cone"] == {"ra": ra, "dec": dec, "radius_arcsec": 1.0}
    assert client.get("/api/cone", params={"ra": 1, "dec": 95}).status_code == 400
    assert client.get("/api/cone", params={"ra": 1, "dec": 0, "radius": 0}).status_code == 422
    bad = client.get("/api/cone", params={"ra": 1, "dec": 0, "where": "bogus > 1"})
    assert bad.status_code == 400 and "bogus" in bad.json()["detail"]


def test_preview_of_a_cutout_and_of_garbage(env):
    client, _, ds = env
    r = client.post("/api/preview", files={"file": ("c.fits", fits_bytes_image(ds[0]["image"]))},
                    data={"kind": "image"})
    assert r.status_code == 200 and r.json()["png"].startswith("data:image/png;base64,")
    r = client.post("/api/preview", files={"file": ("x.fits", b"not fits")}, data={"kind": "spectrum"})
    assert r.status_code == 400 and "not a readable FITS file" in r.json()["detail"]


def test_preview_and_upload_of_a_multi_fibre_coadd(env, real_data):
    client = env[0]
    blob = (real_data / "desi" / "coadd-sv3-dark-26065.fits").read_bytes()
    r = client.post("/api/preview", files={"file": ("coadd.fits", blob)}, data={"kind": "spectrum"})
    assert r.status_code == 200
    body = r.json()
    assert "spectrum" not in body  # the page asks for a fibre first
    assert [t["targetid"] for t in body["targets"]][2] == "39627866878511337"  # exact, as a string
    r = client.post("/api/preview", files={"file": ("coadd.fits", blob)},
                    data={"kind": "spectrum", "targetid": "39627866878511337"})
    assert len(r.json()["spectrum"]["flux"]) == 1500
    r = client.post("/api/search/upload", files={"file": ("coadd.fits", blob)},
                    data={"kind": "spectrum", "k": "3"})
    assert r.status_code == 400 and "holds 5 spectra" in r.json()["detail"]
    r = client.post("/api/search/upload", files={"file": ("coadd.fits", blob)},
                    data={"kind": "spectrum", "k": "3", "targetid": "39627866878514741"})
    assert r.status_code == 200 and r.json()["query"]["targetid"] == "39627866878514741"


def test_a_flux_table_without_ivar_is_searched_and_the_estimate_is_said(env, real_data):
    client = env[0]
    blob = (real_data / "desi-andes" / "coadd-bgs-66003-20200315.fits").read_bytes()
    pick = {"kind": "spectrum", "targetid": "35191325330508031"}
    r = client.post("/api/preview", files={"file": ("andes.fits", blob)}, data=pick)
    assert r.status_code == 200 and r.json()["ivar_estimated"] is True
    assert len(r.json()["targets"]) == 5
    r = client.post("/api/search/upload", files={"file": ("andes.fits", blob)},
                    data={**pick, "k": "3"})
    assert r.status_code == 200, r.text
    q = r.json()["query"]
    assert q["ivar_estimated"] is True and 0 <= q["ood_score"] <= 1
    assert isinstance(q["unfamiliar"], bool)


def test_openapi_is_3_0_without_null_types(env):
    doc = env[0].get("/openapi.json").json()
    assert doc["openapi"] == "3.0.3"
    text = json.dumps(doc)
    assert '{"type": "null"}' not in text and '"nullable": true' in text
    assert {"/api/cone", "/api/preview", "/api/search"} <= set(doc["paths"])
