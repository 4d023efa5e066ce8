"""galclip outliers: the mismatch score flags swapped pairs, rarity flags isolated galaxies."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest


def _catalog(path, swap: tuple[int, int] | None = None, n: int = 1500, seed: int = 0):
    """Paired embeddings that share a latent (redshift, brightness) signal; their agreement
    falls with magnitude (faint pairs agree less, as real ones do). ``swap`` exchanges the images
    of two galaxies; the last galaxy sits far from all others in image space."""
    from galclip.search.catalog import write_catalog

    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.6, n)
    mag = rng.uniform(14, 19.5, n)
    base = np.stack([np.cos(5 * z), np.sin(5 * z), (mag - 17) / 3, np.cos(9 * z)], 1)
    base = np.concatenate([base, 0.3 * rng.normal(size=(n, 12))], 1)
    noise = 0.05 + 0.1 * (mag - 14)[:, None] / 5.5         # faint: noisier pairs
    img = base + noise * rng.normal(size=base.shape)
    spec = base + noise * rng.normal(size=base.shape)
    img[-1] = 5 * rng.normal(size=base.shape[1])            # an isolated image
    if swap:
        a, b = swap
        img[[a, b]] = img[[b, a]]
    unit = [x / np.linalg.norm(x, axis=1, keepdims=True) for x in (img, spec)]
    meta = {"object_id": np.arange(n, dtype=np.int64), "ra": np.zeros(n), "dec": np.zeros(n),
            "redshift": z.astype(np.float32), "mag_r": mag}
    write_catalog(path, meta, {"image": unit[0].astype(np.float32),
                               "spectrum": unit[1].astype(np.float32)}, model_sha256="c" * 64)
    return z


def test_mismatch_ranks_a_swapped_pair_above_its_unswapped_originals(tmp_path):
    from galclip.eval.outliers import find_outliers

    z = _catalog(tmp_path / "clean")
    a = int(np.argmin(np.abs(z - 0.1)))
    b = int(np.argmin(np.abs(z - 0.5)))
    _catalog(tmp_path / "swapped", swap=(a, b))
    clean = find_outliers(tmp_path / "clean").column("mismatch_score").to_numpy()
    swapped = find_outliers(tmp_path / "swapped").column("mismatch_score").to_numpy()
    for r in (a, b):
        assert swapped[r] > clean[r] + 3
        assert swapped[r] > np.quantile(swapped, 0.99)      # among the top 1 %


def test_mismatch_is_calibrated_for_brightness_where_a_raw_cosine_is_not(tmp_path):
    from galclip.eval.outliers import find_outliers

    _catalog(tmp_path / "c", n=2000)
    t = find_outliers(tmp_path / "c")
    mag = pq.read_table(tmp_path / "c" / "shards").column("mag_r").to_numpy()
    score, cos = t.column("mismatch_score").to_numpy(), t.column("pair_cosine").to_numpy()
    faint = mag > 18.5
    # the top 10 % by raw disagreement holds over twice 10 % of the faint galaxies
    assert np.mean(-cos[faint] > np.quantile(-cos, 0.9)) > 0.2
    assert abs(np.mean(score[faint] > np.quantile(score, 0.9)) - 0.1) < 0.05  # calibrated


def test_rarity_flags_the_isolated_galaxy_and_top_orders_it(tmp_path, capsys):
    from galclip.cli import main
    from galclip.eval.outliers import find_outliers

    _catalog(tmp_path / "c")
    t = find_outliers(tmp_path / "c", tmp_path / "top.parquet", top_n=5, by="rarity_image")
    assert t.column("object_id").to_numpy()[0] == 1499
    r = t.column("rarity_image").to_numpy()
    assert r[0] == 1.0 and (np.diff(r) <= 0).all()
    back = pq.read_table(tmp_path / "top.parquet")
    assert back.column_names == ["object_id", "mismatch_score", "rarity_image",
                                 "rarity_spectrum", "pair_cosine"] and back.num_rows == 5
    assert main(["outliers", str(tmp_path / "c"), "--out", str(tmp_path / "o.csv"),
                 "--top", "3"]) == 0
    assert "wrote 3 rows" in capsys.readouterr().out
    for bad in (["--top", "0"], ["--by", "colour"], ["--k", "x"]):
        assert main(["outliers", str(tmp_path / "c"), "--out", str(tmp_path / "o.csv"),
                     *bad]) == 2
        assert "Traceback" not in capsys.readouterr().err
    assert main(["outliers", str(tmp_path / "none"), "--out", str(tmp_path / "o.csv")]) == 2
    assert main(["outliers", str(tmp_path / "c"), "--out", str(tmp_path / "o.txt")]) == 2
    assert "unknown table format" in capsys.readouterr().err


@pytest.mark.parametrize("n_peers", [3, 50])
def test_robust_z_is_zero_at_the_peer_median(n_peers):
    from galclip.eval.outliers import robust_z

    peers = np.random.default_rng(0).normal(size=(4, n_peers))
    z = robust_z(np.median(peers, 1), peers)
    np.testing.assert_allclose(z, 0, atol=1e-12)


def test_explorer_serves_redshift_densities_and_unusual_galaxies(tmp_path):
    from fastapi.testclient import TestClient

    from galclip.eval.outliers import find_outliers
    from galclip.eval.predict import predict
    from galclip.serve.server import create_app

    z = _catalog(tmp_path / "c")
    predict(tmp_path / "c", tmp_path / "c", tmp_path / "p.parquet", k=16)
    find_outliers(tmp_path / "c", tmp_path / "o.parquet")
    client = TestClient(create_app(tmp_path / "c", predictions=tmp_path / "p.parquet",
                                   outliers=tmp_path / "o.parquet"))
    assert client.get("/api/annotations").json()["outliers"] is True
    p = client.get("/api/objects/7/redshift_pdf").json()
    assert p["catalog_redshift"] == pytest.approx(float(np.float32(z[7])))
    assert len(p["pdf"]) == len(p["grid"]) and p["redshift_lo68"] <= p["redshift_hi68"]
    assert abs(sum(p["pdf"]) * (p["grid"][1] - p["grid"][0]) - 1) < 1e-3
    assert client.get("/api/objects/999999/redshift_pdf").status_code == 404
    u = client.get("/api/unusual", params={"by": "rarity_image", "n": 3}).json()
    assert u["galaxies"][0]["object_id"] == 1499 and u["n"] == 3
    assert client.get("/api/unusual", params={"by": "nope"}).status_code == 422
    assert "annotations.js" in client.get("/").text
    bare = TestClient(create_app(tmp_path / "c"))
    assert bare.get("/api/unusual").status_code == 404
    _catalog(tmp_path / "other", n=300, seed=4)
    with pytest.raises(ValueError, match="model"):
        from galclip.search.catalog import write_catalog  # same vectors, another model
        write_catalog(tmp_path / "m", {"object_id": np.arange(3), "ra": np.zeros(3),
                                       "dec": np.zeros(3), "redshift": np.zeros(3)},
                      {"image": np.eye(3, dtype=np.float32)}, model_sha256="d" * 64)
        create_app(tmp_path / "m", predictions=tmp_path / "p.parquet")


@pytest.mark.slow
def test_explorer_page_draws_the_density_and_lists_unusual_galaxies(tmp_path):
    import threading
    import time

    import uvicorn

    from conftest import free_port
    from galclip.eval.outliers import find_outliers
    from galclip.eval.predict import predict
    from galclip.serve.server import create_app
    from test_search_browser import CHROMIUM, FLAGS, _ensure_chromium

    _ensure_chromium()
    from playwright.sync_api import sync_playwright

    _catalog(tmp_path / "c")
    predict(tmp_path / "c", tmp_path / "c", tmp_path / "p.parquet", k=16)
    find_outliers(tmp_path / "c", tmp_path / "o.parquet")
    app = create_app(tmp_path / "c", predictions=tmp_path / "p.parquet",
                     outliers=tmp_path / "o.parquet")
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                        log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{srv.config.port}/?id=7")
            page.wait_for_selector("#query .pdf-plot path")
            assert "catalogue z" in page.inner_text("#query .pdf")
            page.select_option("#unusual-by", "rarity_image")
            page.click("#unusual-btn")              # replaces the cards of the ?id=7 search:
            page.wait_for_function(                  # wait for the list itself, not any card
                "document.querySelector('#results .card')?.dataset.id === '1499'")
            assert not errors
            browser.close()
    finally:
        srv.should_exit = True
