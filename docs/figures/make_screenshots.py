"""Screenshots of the explorer and the evaluation report for the README (docs/figures/).

Usage:  python docs/figures/make_screenshots.py RUN   (RUN = a demo folder, e.g. runs/demo)

Starts the explorer over RUN/catalog on a free local port, drives headless Chromium
(/usr/bin/chromium, Playwright): an id search with results, the spectrum view of a neighbour in
the rest frame with the query overlaid; then opens RUN/report/report.html. Nothing external is
fetched.
"""
from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent


def serve(run: Path) -> tuple[str, object]:
    import uvicorn

    from galclip.serve.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(run / "catalog", data_dir=run / "data"),
                                        host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", srv


def main() -> None:
    from playwright.sync_api import sync_playwright

    run = Path(sys.argv[1])
    url, srv = serve(run)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = b.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{url}/?id=3&from=image&to=spectrum&k=12")
        page.wait_for_function("document.querySelectorAll('#results .card svg.spec polyline').length >= 8")
        page.wait_for_timeout(800)
        page.screenshot(path=str(OUT / "explorer.png"))
        page.click("#results .card >> nth=0 >> svg.spec")
        page.wait_for_selector("#specview:not([hidden]) polyline.sv-main")
        page.check("#sv-rest")
        page.locator("#specview").screenshot(path=str(OUT / "explorer-spectrum.png"))
        page.goto((run / "report" / "report.html").resolve().as_uri())
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.screenshot(path=str(OUT / "report.png"))
        b.close()
    srv.should_exit = True
    print("\n".join(str(OUT / n) for n in ("explorer.png", "explorer-spectrum.png", "report.png")))


if __name__ == "__main__":
    main()
