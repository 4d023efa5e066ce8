"""End to end in a real browser: the explorer page in headless Chromium (Playwright).

Uses Debian's ``chromium`` (skipped with the reason where it is missing; never ``playwright install``)
against the server running on a free 127.0.0.1 port in a thread.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import free_port
from search_fixtures import build_all, fits_bytes_image

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def _ensure_chromium() -> None:
    """Skip, saying why, where Debian's chromium is missing (``.ci/run`` and the README install
    it: ``apt-get install -y chromium``; a test never installs system packages)."""
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} missing: install it with `apt-get install -y chromium`"
        print(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from galclip.search.api import Catalog
    from galclip.serve.server import create_app

    _ensure_chromium()
    root = tmp_path_factory.mktemp("browser")
    built = build_all(root)
    app = create_app(catalog=Catalog(built.catalog, model=built.model), data_dir=built.data)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{srv.config.port}", built, root
    srv.should_exit = True
    thread.join(10)


@pytest.mark.slow
def test_explorer_search_switch_modes_upload(server):
    from playwright.sync_api import sync_playwright

    from galclip.data import open_dataset

    url, built, root = server
    item = open_dataset(built.data)[20]
    upload = root / "query-cutout.fits"
    upload.write_bytes(fits_bytes_image(item["image"], pad=10))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        failed = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(url)
        page.wait_for_selector("#examples a")
        assert "90 galaxies" in page.text_content("#summary")

        # search an id: neighbours appear with colour images and spectrum plots
        oid = page.get_attribute("#examples a >> nth=2", "data-id")
        page.fill("#object-id", oid)
        page.click("#search-btn")
        page.wait_for_function("document.querySelectorAll('#results .card').length == 12")
        page.wait_for_function("[...document.querySelectorAll('#results .card img')]"
                               ".every(i => i.complete && i.naturalWidth == 152)")
        page.wait_for_selector("#results .card svg polyline")
        assert "image → image neighbours of object " + oid in page.text_content("#status")
        ids = page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.id)")
        assert oid not in ids and page.text_content("#query .head").startswith(f"query #{oid}")

        # switch to cross-modal: the same object, searched among spectra
        page.click("#mode button[data-to=spectrum][data-from=image]")
        page.wait_for_function("document.querySelector('#status').textContent"
                               ".includes('image → spectrum')")
        page.wait_for_function("document.querySelectorAll('#results .card').length == 12")
        cross = page.eval_on_selector_all("#results .card", "cs => cs.map(c => c.dataset.id)")
        from galclip.search.api import Catalog

        want = Catalog(built.catalog, model=built.model).search(id=int(oid), to="spectrum", k=12)
        assert cross == [str(n["object_id"]) for n in want.neighbours] and cross != ids

        # property filter: only low-redshift neighbours
        page.click("#add-filter")
        page.select_option(".filter-row select >> nth=0", "redshift")
        page.select_option(".filter-row select >> nth=1", "<")
        page.fill(".filter-row input", "0.2")
        page.click("#search-btn")
        page.wait_for_function("document.querySelector('#status').textContent.includes('where')")
        zs = page.eval_on_selector_all("#results .card dd:first-of-type",
                                       "ds => ds.map(d => parseFloat(d.textContent))")
        assert zs and all(z < 0.2 for z in zs)
        page.click(".filter-row button")

        # upload a cutout in image -> image mode: the galaxy itself comes first
        page.click("#mode button[data-to=image][data-from=image]")
        page.set_input_files("#upload-file", str(upload))
        page.click("#upload-btn")
        page.wait_for_function("document.querySelector('#status').textContent"
                               ".includes('uploaded query-cutout.fits')")
        first = page.get_attribute("#results .card >> nth=0", "data-id")
        assert int(first) == int(item["object_id"])
        page.wait_for_function("[...document.querySelectorAll('#results .card img')]"
                               ".every(i => i.complete && i.naturalWidth == 152)")
        shot = root / "explorer.png"
        page.screenshot(path=str(shot), full_page=False)
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
        assert not [u for u in failed if not u.startswith(url)], f"external requests: {failed}"
        browser.close()


@pytest.mark.slow
def test_a_slow_earlier_search_does_not_overwrite_a_newer_upload(server):
    """The race CI once hit: switching mode re-runs the last id search, the user uploads a file at
    once, and the id search's response arrives last. Held here on purpose (Playwright routes, no
    timing): the page must keep showing the upload's results."""
    from playwright.sync_api import sync_playwright

    from galclip.data import open_dataset

    url, built, root = server
    item = open_dataset(built.data)[7]
    upload = root / "race-cutout.fits"
    upload.write_bytes(fits_bytes_image(item["image"], pad=10))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#examples a")
        oid = page.get_attribute("#examples a >> nth=1", "data-id")
        page.fill("#object-id", oid)
        page.click("#search-btn")
        page.wait_for_function("document.querySelectorAll('#results .card').length == 12")

        held = []
        page.route("**/api/search?*", lambda route: held.append(route))
        page.click("#mode button[data-to=spectrum][data-from=image]")   # re-runs the id search
        page.wait_for_function("document.querySelector('#status').textContent == 'searching…'")
        page.set_input_files("#upload-file", str(upload))
        page.click("#upload-btn")
        page.wait_for_function("document.querySelector('#status').textContent"
                               ".includes('uploaded race-cutout.fits')")
        first = page.get_attribute("#results .card >> nth=0", "data-id")
        for _ in range(1200):                             # until the id search reaches the route
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the mode switch never sent its id search"
        with page.expect_response("**/api/search?*"):
            held[0].continue_()
        page.evaluate("() => new Promise((r) => setTimeout(r, 0))")   # let its handler run
        status = page.text_content("#status")
        assert "uploaded race-cutout.fits" in status, status
        assert page.get_attribute("#results .card >> nth=0", "data-id") == first
        browser.close()
