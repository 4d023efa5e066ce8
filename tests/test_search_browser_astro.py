"""The explorer items an astronomer relies on, in headless Chromium (Playwright): working API
docs, full-precision positions with a Legacy Survey viewer link, the large spectrum view (axes,
zoom, rest frame, lines, overlay), search state in the URL (permalink, back button), CSV and
VOTable downloads, cone search, upload preview and the TARGETID picker for DESI coadds."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from search_fixtures import fits_bytes_image
from test_search_browser import CHROMIUM, FLAGS, server  # noqa: F401  (module fixture)

REAL_COADD = Path(__file__).resolve().parents[1].parent / "shared/data/real/desi/coadd-sv3-dark-26065.fits"


@pytest.fixture(scope="module")
def browser(server):  # noqa: F811  (the server fixture skips without chromium)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):  # noqa: F811
    url = server[0]
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    external = []
    pg.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else external.append(r.url))
    yield pg
    ctx.close()
    assert not external, f"the page fetched external resources: {external}"


def _search(page, url, oid, mode=None):
    page.goto(url)
    page.wait_for_selector("#examples a")
    if mode:
        page.click(f"#mode button[data-from={mode[0]}][data-to={mode[1]}]")
    page.fill("#object-id", str(oid))
    page.click("#search-btn")
    page.wait_for_function("document.querySelectorAll('#results .card').length == 12")


def _ids(page):
    return page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.id)")


@pytest.mark.slow
def test_docs_render_every_operation(page, server):  # noqa: F811
    url = server[0]
    page.goto(f"{url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "ns => ns.map(n => n.textContent)")
    for p in ("/api/search", "/api/search/upload", "/api/cone", "/api/preview", "/api/info"):
        assert any(p == s.strip().replace("\u200b", "") for s in paths), (p, paths)
    assert "Unable to render" not in page.content()


@pytest.mark.slow
def test_positions_in_full_precision_with_a_legacy_survey_link(page, server):  # noqa: F811
    from galclip.search.api import Catalog

    url, built, _ = server
    cat = Catalog(built.catalog)
    oid = int(cat.meta["object_id"][10])
    _search(page, url, oid)
    first = int(_ids(page)[0])
    props = cat.properties(cat.row_of(first))
    card = f"#results .card[data-id='{first}']"
    assert page.text_content(f"{card} .v-ra") == f"{props['ra']:.6f}"
    assert page.text_content(f"{card} .v-dec") == f"{props['dec']:.6f}"
    href = page.get_attribute(f"{card} .ls-link", "href")
    assert href.startswith("https://www.legacysurvey.org/viewer?")
    assert f"ra={props['ra']:.6f}&dec={props['dec']:.6f}" in href


@pytest.mark.slow
def test_spectrum_view_axes_zoom_rest_frame_lines_overlay(page, server):  # noqa: F811
    url, built, _ = server
    _search(page, url, 1000 + 7 * 30)
    page.wait_for_selector("#results .card svg.spec polyline")
    page.click("#results .card >> nth=0 >> svg.spec")
    page.wait_for_selector("#specview:not([hidden]) polyline.sv-main")
    xt = lambda: [float(t) for t in page.eval_on_selector_all(  # noqa: E731
        "#specview text.xtick", "ts => ts.map(t => t.textContent)")]
    ticks = xt()
    assert len(ticks) >= 4 and ticks[0] > 3500 and ticks[-1] < 10000
    span = lambda: [float(page.get_attribute("#specview svg", a)) for a in ("data-x0", "data-x1")]  # noqa: E731
    obs, z = span(), float(page.get_attribute("#specview svg", "data-z"))
    assert page.text_content("#specview text.xlabel") == "observed wavelength [Å]"
    assert page.locator("#specview line.mark").count() >= 3  # lines at the object's redshift
    assert page.locator("#specview polyline.sv-overlay").count() == 1  # the query, overlaid
    page.check("#sv-rest")
    assert page.text_content("#specview text.xlabel") == "rest-frame wavelength [Å]"
    assert span()[1] == pytest.approx(obs[1] / (1 + z), rel=1e-4)  # divided by 1 + z
    box = page.locator("#specview svg").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y)
    page.mouse.up()
    zoomed = xt()
    assert zoomed[-1] - zoomed[0] < (ticks[-1] - ticks[0]) / 3
    page.click("#sv-reset")
    page.uncheck("#sv-overlay")
    assert page.locator("#specview polyline.sv-overlay").count() == 0


@pytest.mark.slow
def test_search_state_lives_in_the_url(page, server):  # noqa: F811
    url, built, _ = server
    _search(page, url, 1000 + 7 * 5)
    first = _ids(page)
    assert re.search(r"[?&]id=1035\b", page.url) and "from=image" in page.url
    page.click("#mode button[data-from=image][data-to=spectrum]")
    page.wait_for_function("location.search.includes('to=spectrum')")
    page.wait_for_function("document.querySelector('#status').textContent.includes('image → spectrum')")
    second = _ids(page)
    assert second != first
    permalink = page.url
    page.go_back()
    page.wait_for_function("document.querySelector('#status').textContent.includes('image → image')")
    page.wait_for_function("[...document.querySelectorAll('#results .card')].map(c => c.dataset.id)"
                           f".join() == '{','.join(first)}'")
    page.goto(permalink)  # a bookmark reproduces the search
    page.wait_for_function("document.querySelector('#status').textContent.includes('image → spectrum')")
    assert _ids(page) == second
    assert page.get_attribute("#mode button.active", "data-to") == "spectrum"


@pytest.mark.slow
def test_results_download_as_csv_and_votable(page, server, tmp_path):  # noqa: F811
    from astropy.io.votable import parse_single_table

    url, built, _ = server
    _search(page, url, 1000 + 7 * 12)
    ids = [int(i) for i in _ids(page)]
    with page.expect_download() as d:
        page.click("#dl-csv")
    rows = list(csv.DictReader(io.StringIO(Path(d.value.path()).read_text())))
    assert [int(r["object_id"]) for r in rows] == ids and "score" in rows[0]
    with page.expect_download() as d:
        page.click("#dl-votable")
    path = tmp_path / "r.vot"
    d.value.save_as(path)
    t = parse_single_table(str(path)).to_table()
    assert list(t["object_id"]) == ids
    assert t["ra"].unit == "deg" and t["ra"].dtype.kind == "f"
    assert [f"{v:.6f}" for v in t["ra"]] == [f"{float(r['ra']):.6f}" for r in rows]


@pytest.mark.slow
def test_cone_search_by_position(page, server):  # noqa: F811
    from galclip.search.api import Catalog

    url, built, _ = server
    cat = Catalog(built.catalog)
    ra, dec = float(cat.meta["ra"][4]), float(cat.meta["dec"][4])
    page.goto(url)
    page.wait_for_selector("#examples a")
    page.fill("#cone-ra", f"{ra:.7f}")
    page.fill("#cone-dec", f"{dec:.7f}")
    page.fill("#cone-radius", "2")
    page.click("#cone-btn")
    page.wait_for_function("document.querySelector('#status').textContent.includes('objects within')")
    assert _ids(page)[0] == str(cat.meta["object_id"][4])
    assert "ra=" in page.url and "radius=2" in page.url
    page.fill("#cone-dec", "89.99")
    page.click("#cone-btn")
    page.wait_for_function("document.querySelector('#status').textContent.includes('none')")
    assert _ids(page) == []


@pytest.mark.slow
def test_upload_preview_of_a_cutout(page, server):  # noqa: F811
    from galclip.data import open_dataset

    url, built, root = server
    f = root / "preview-cutout.fits"
    f.write_bytes(fits_bytes_image(open_dataset(built.data)[3]["image"]))
    page.goto(url)
    page.wait_for_selector("#examples a")
    page.set_input_files("#upload-file", str(f))
    page.wait_for_function("document.querySelector('#preview img') && "
                           "document.querySelector('#preview img').naturalWidth == 152")
    assert "preview-cutout.fits" in page.text_content("#preview")


@pytest.mark.slow
def test_targetid_picker_for_a_multi_fibre_coadd(page, server):  # noqa: F811
    if not REAL_COADD.exists():
        pytest.skip(f"{REAL_COADD} not found")
    url = server[0]
    page.goto(url)
    page.wait_for_selector("#examples a")
    page.click("#mode button[data-from=spectrum][data-to=spectrum]")
    page.select_option("#upload-kind", "spectrum")
    page.set_input_files("#upload-file", str(REAL_COADD))
    page.wait_for_selector("#targetid:not([hidden])")
    options = page.eval_on_selector_all("#targetid option", "os => os.map(o => o.value)")
    assert options == ["-2713437", "-2713415", "39627866878511337", "616088619186127404",
                       "39627866878514741"]
    assert page.input_value("#targetid") == "39627866878511337"  # the first fibre with data
    page.wait_for_selector("#preview svg polyline")
    page.select_option("#targetid", "39627866878514741")
    page.wait_for_function("document.querySelector('#preview svg polyline') !== null")
    page.click("#upload-btn")
    page.wait_for_function("document.querySelector('#status').textContent"
                           ".includes('TARGETID 39627866878514741')")
    assert len(_ids(page)) == 12
