"""galclip predict: calibrated k-NN intervals and redshift densities, refusals, outputs, CLI."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from galclip.eval import conformal as cf

SHA = "a" * 64


def _curve(t: np.ndarray, rng, dim: int = 8, noise: float = 0.02) -> np.ndarray:
    """Unit vectors along a smooth curve parametrised by t in [0, 1], plus a little noise."""
    freqs = np.arange(1, dim // 2 + 1)[None]
    x = np.concatenate([np.cos(np.pi * t[:, None] * freqs), np.sin(np.pi * t[:, None] * freqs)], 1)
    x = x + noise * rng.normal(size=x.shape)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_catalog(path, n: int, seed: int, first_id: int = 0, sha: str = SHA):
    """A catalog whose ``redshift`` = 0.05 + 0.4 t + N(0, 0.01 + 0.03 t) (heteroscedastic),
    t uniform: the true 68 % interval of a galaxy at t is known exactly."""
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, n)
    z = 0.05 + 0.4 * t + rng.normal(0, 0.01 + 0.03 * t)
    meta = {"object_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 10, n),
            "redshift": z.astype(np.float32), "log_mstar": (9 + 2 * t + rng.normal(0, 0.2, n)),
            "quenched": (t > 0.5).astype(np.int8)}
    emb = {"image": _curve(t, rng, noise=0.3), "spectrum": _curve(t, rng)}
    write_catalog(path, meta, emb, model_sha256=sha)
    for m in emb:
        build_index(path, m, kind="flat", verbose=False)
    return meta


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    ref = synthetic_catalog(root / "ref", 8000, seed=0)
    query = synthetic_catalog(root / "query", 3000, seed=1)   # ids overlap the reference's
    return root, ref, query


# ----------------------------------------------------------------------------- conformal math
def test_conformal_step_fixes_a_deliberately_overconfident_estimator():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6000, 1))
    raw = np.empty((6000, 2, 2, 1))  # intervals half as wide as the true 68 % / 95 % ones
    raw[:, 0, 0], raw[:, 0, 1], raw[:, 1, 0], raw[:, 1, 1] = -0.5, 0.5, -0.98, 0.98
    assert cf.coverage(raw[3000:], y[3000:])[0, 0] < 0.45            # overconfident
    cal = cf.IntervalCalibration.fit(raw[:3000], y[:3000], np.array([1e-6]))
    cov = cf.coverage(cal.apply(raw[3000:]), y[3000:])[:, 0]
    assert abs(cov[0] - 0.68) < 0.03 and abs(cov[1] - 0.95) < 0.015
    assert cal.q[0, 0] == pytest.approx(0.5, abs=0.1)               # widened to ±1 sigma


def test_weighted_quantiles_follow_the_weights():
    y = np.array([[1.0, 2.0, 3.0, np.nan]])[:, :, None]
    w = np.array([[1.0, 1.0, 2.0, 5.0]])
    q = cf.weighted_quantiles(y, w, (0.5, 0.01, 0.99))[0, :, 0]
    assert 2.0 < q[0] < 3.0 and q[1] == 1.0 and q[2] == 3.0          # NaN label ignored


def test_redshift_pdf_is_normalised_and_recalibrated_pit_is_uniform():
    rng = np.random.default_rng(1)
    grid = cf.Grid(0.0, 0.005, 200)
    n, k = 3000, 32
    centre = rng.uniform(0.1, 0.9, n)
    truth = centre + rng.normal(0, 0.05, n)
    neigh = centre[:, None] + rng.normal(0, 0.01, (n, k))          # too narrow by 5x
    w = np.ones((n, k))
    pdf = cf.raw_pdf(neigh, w, grid)
    np.testing.assert_allclose(pdf.sum(1) * grid.step, 1.0, atol=1e-9)
    u = cf.cdf_at(pdf, grid, truth)
    assert cf.pit_ks(u[1500:]) > 0.2                                  # raw: overconfident
    pit = cf.PitCalibration.fit(u[:1500])
    cal = pit.apply(pdf[1500:], grid)
    np.testing.assert_allclose(cal.sum(1) * grid.step, 1.0, atol=1e-9)
    assert (cal >= 0).all()
    assert cf.pit_ks(cf.cdf_at(cal, grid, truth[1500:])) < 0.05
    assert cf.crps(cal, grid, truth[1500:]).mean() < cf.crps(pdf[1500:], grid, truth[1500:]).mean()


def test_crps_of_a_sharp_density_is_the_absolute_error():
    grid = cf.Grid(0.0, 0.001, 1000)
    pdf = np.zeros((1, 1000))
    pdf[0, 300] = 1 / grid.step                                       # all mass in [0.3, 0.301]
    assert cf.crps(pdf, grid, np.array([0.5]))[0] == pytest.approx(0.1995, abs=1e-3)


# ----------------------------------------------------------------------------- predict
def test_intervals_cover_the_truth_as_promised_on_new_galaxies(catalogs):
    from galclip.eval.predict import interval_columns, predict

    root, _, query = catalogs
    res = predict(root / "query", root / "ref", from_="spectrum", k=32)
    t = res.table
    assert t.num_rows == 3000 and t.column("object_id").to_numpy().tolist() == \
        query["object_id"].tolist()
    for prop in ("redshift", "log_mstar"):
        truth = query[prop]
        lo68, hi68, lo95, hi95 = (t.column(c).to_numpy() for c in interval_columns(prop))
        assert abs(np.mean((lo68 <= truth) & (truth <= hi68)) - 0.68) < 0.03, prop
        assert abs(np.mean((lo95 <= truth) & (truth <= hi95)) - 0.95) < 0.03, prop
        assert (lo95 <= lo68).all() and (hi68 <= hi95).all()
    grid = cf.Grid(**{k: v for k, v in res.metadata["redshift_pdf_grid"].items() if k != "centres"})
    pdf = np.stack(t.column("redshift_pdf").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(pdf.sum(1) * grid.step, 1.0, atol=1e-4)
    assert cf.pit_ks(cf.cdf_at(pdf, grid, query["redshift"])) < 0.05
    # heteroscedastic truth: the intervals widen where the noise is larger
    wide = (t.column("redshift_hi68").to_numpy() - t.column("redshift_lo68").to_numpy())
    assert np.median(wide[query["redshift"] > 0.35]) > 2 * np.median(wide[query["redshift"] < 0.15])


def test_the_redshift_grid_resolves_sharp_densities_that_300_bins_cannot_calibrate(tmp_path):
    """Neighbours that agree on z to ~0.0006 (a spectrum's, from a dense reference): on a
    300-bin grid (0.0045 a bin) the PIT map, applied at the bin edges, cannot make the query
    PIT uniform; the default grid takes as many bins as the neighbours need."""
    from galclip.eval.predict import predict
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    def sharp(path, n, seed, first_id):
        rng = np.random.default_rng(seed)
        t = rng.uniform(0, 1, n)
        meta = {"object_id": np.arange(first_id, first_id + n, dtype=np.int64),
                "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 10, n),
                "redshift": (0.05 + 1.1 * t + rng.normal(0, 0.0006, n)).astype(np.float32)}
        write_catalog(path, meta, {"spectrum": _curve(t, rng, noise=0.0005)}, model_sha256=SHA)
        build_index(path, "spectrum", kind="flat", verbose=False)
        return meta

    sharp(tmp_path / "ref", 12000, 0, 0)
    query = sharp(tmp_path / "q", 2000, 1, 10**6)

    def pit_ks(res):
        g = cf.Grid(**{k: v for k, v in res.metadata["redshift_pdf_grid"].items() if k != "centres"})
        pdf = np.stack(res.table.column("redshift_pdf").to_numpy(zero_copy_only=False))
        return cf.pit_ks(cf.cdf_at(pdf, g, query["redshift"])), g.n

    fixed, n_fixed = pit_ks(predict(tmp_path / "q", tmp_path / "ref", properties=["redshift"],
                                    pdf_bins=300))
    auto, n_auto = pit_ks(predict(tmp_path / "q", tmp_path / "ref", properties=["redshift"]))
    assert n_fixed == 300 and cf.MIN_BINS < n_auto <= cf.MAX_BINS
    assert fixed > 0.08 and auto < 0.05, (fixed, auto, n_auto)


def test_grid_bins_follow_the_neighbours_spread_within_bounds():
    rng = np.random.default_rng(0)
    values = np.array([0.0, 1.2])
    w = np.ones((200, 32))
    bins = {s: cf.Grid.resolving(values, 0.5 + rng.normal(0, s, (200, 32)), w).n
            for s in (1e-1, 1e-2, 3e-3, 1e-6)}
    assert bins[1e-1] == cf.MIN_BINS and bins[1e-6] == cf.MAX_BINS
    assert cf.MIN_BINS < bins[1e-2] < bins[3e-3] < cf.MAX_BINS
    z = 0.5 + rng.normal(0, 1e-2, (200, 32))
    step, bw = cf.Grid.resolving(values, z, w).step, cf.silverman_bandwidth(z, w, 0.0)
    assert step == pytest.approx(np.median(bw) / cf.BINS_PER_BANDWIDTH, rel=0.05)


def test_galaxy_is_left_out_of_its_own_neighbours_only_in_its_own_catalog(catalogs):
    from galclip.eval.predict import Reference, _same_galaxies, open_reference
    from galclip.search.catalog import read_catalog_manifest

    root, ref_meta, _ = catalogs
    ref: Reference = open_reference(root / "ref", "spectrum")
    assert _same_galaxies(read_catalog_manifest(root / "ref"), ref)
    assert not _same_galaxies(read_catalog_manifest(root / "query"), ref)  # ids overlap, though
    from galclip.eval.predict import _vectors, neighbours

    rows = np.flatnonzero(ref.pool)[:50]
    vec = _vectors(ref.path, ref.manifest, ["spectrum"], rows)
    own, _, dist = neighbours(ref, vec, 8, rows)
    assert not (own == rows[:, None]).any()
    other, _, dist2 = neighbours(ref, vec, 8, None)                   # as a foreign catalog
    assert (other[:, 0] == rows).all() and np.allclose(dist2[:, 0], 0, atol=1e-3)


def test_look_up_only_reference_rows_join_the_pool_and_never_calibrate(tmp_path):
    """Rows labelled 'reference' (galclip simulate --reference) are neighbours, not calibration
    galaxies: the calibration set stays the val + test galaxies."""
    from galclip.eval.predict import open_reference
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    n = 400
    rng = np.random.default_rng(4)
    t = rng.uniform(0, 1, n)
    split = np.array(["train"] * 200 + ["val"] * 25 + ["test"] * 25 + ["reference"] * 150)
    meta = {"object_id": np.arange(n, dtype=np.int64), "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-10, 10, n), "redshift": (0.05 + 0.4 * t).astype(np.float32),
            "split": split}
    write_catalog(tmp_path / "r", meta, {"spectrum": _curve(t, rng)}, model_sha256=SHA)
    build_index(tmp_path / "r", "spectrum", kind="flat", verbose=False)
    ref = open_reference(tmp_path / "r", "spectrum")
    np.testing.assert_array_equal(ref.pool, np.isin(split, ["train", "reference"]))
    assert (~ref.pool).sum() == 50


@pytest.mark.slow
def test_outputs_round_trip_with_schema_and_provenance(catalogs, tmp_path):
    from galclip.eval.predict import interval_columns, predict, read_prediction_metadata
    from galclip.search.catalog import catalog_fingerprint, read_catalog_manifest

    root, _, _ = catalogs
    res = predict(root / "query", root / "ref", tmp_path / "p.parquet", from_="both",
                  properties=["redshift"], k=16, chunk_rows=700)
    t = pq.read_table(tmp_path / "p.parquet")
    assert t.column_names == ["object_id", "n_neighbours", "neighbour_distance", "redshift",
                              *interval_columns("redshift"), "redshift_pdf", "ood_score",
                              "unfamiliar"]
    assert t.num_rows == 3000 and (t.column("n_neighbours").to_numpy() == 32).all()
    meta = read_prediction_metadata(tmp_path / "p.parquet")
    assert {**meta, "n_rows": 3000, "seconds": res.metadata["seconds"]} == \
        json.loads(json.dumps(res.metadata))
    assert meta["model_sha256"] == SHA and meta["k"] == 16
    assert meta["reference"]["fingerprint"] == catalog_fingerprint(read_catalog_manifest(root / "ref"))
    assert meta["calibration"]["n_calibration"]["redshift"] == meta["reference"]["n_calibration"]
    assert len(meta["redshift_pdf_grid"]["centres"]) == t.column("redshift_pdf").type.list_size
    predict(root / "query", root / "ref", tmp_path / "p.ecsv", properties=["redshift"], k=16)
    from astropy.table import Table

    e = Table.read(tmp_path / "p.ecsv", format="ascii.ecsv")
    assert e["redshift_pdf"].shape == (3000, meta["redshift_pdf_grid"]["n"])
    assert read_prediction_metadata(tmp_path / "p.ecsv")["k"] == 16
    predict(root / "query", root / "ref", tmp_path / "p.csv", properties=["redshift"], k=16)
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert "redshift_lo95" in header and "redshift_pdf" not in header


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_one_search_and_worker_threads_change_no_output(catalogs, tmp_path, kind, monkeypatch):
    """The fast path (OOD distance read from the prediction's own search, chunks on worker
    threads) writes exactly what one thread with a separate OOD search writes, for a foreign
    catalog and for the reference's own galaxies (own row left out). Here with FAISS's own
    search, as the separate OOD search does (the list scan, whose scores differ from FAISS's by
    float rounding, is pinned to FAISS in test_predict_speed.py)."""
    import shutil

    from galclip.eval.predict import _self_rows, iter_query, ood_columns, open_reference, predict
    from galclip.search.catalog import read_catalog_manifest
    from galclip.search.index import ListScan, build_index

    monkeypatch.setattr(ListScan, "of", classmethod(lambda cls, index: None))
    root, _, _ = catalogs
    ref_dir = tmp_path / "ref"
    shutil.copytree(root / "ref", ref_dir)
    build_index(ref_dir, "spectrum", kind=kind, nlist=16, verbose=False)
    from_ = "both" if kind == "flat" else "spectrum"     # the IVF copy indexes spectra only
    for query, same in ((root / "query", False), (ref_dir, True)):
        one = predict(query, ref_dir, from_=from_, k=16, chunk_rows=700, workers=1).table
        many = predict(query, ref_dir, from_=from_, k=16, chunk_rows=700, workers=3).table
        assert one.equals(many)
        ref = open_reference(ref_dir, from_)
        assert ref.searchers["spectrum"].depth_free and ref.catalog.index("spectrum").kind == kind
        chunks = iter_query(query, read_catalog_manifest(query), list(ref.searchers), 700)
        ood = [ood_columns(ref, v, _self_rows(ref, ids) if same else None) for ids, v in chunks]
        for c in ("ood_score", "unfamiliar"):
            assert np.array_equal(one.column(c).to_numpy(),
                                  np.concatenate([o[c] for o in ood])), (query, c)


def test_the_list_scan_predicts_what_faiss_search_predicts(catalogs, tmp_path, monkeypatch):
    """On an IVF-Flat reference predict searches by matrix products over the probed lists
    (``ListScan``): the same rows as with FAISS's own search, values equal to float rounding but
    on the few rows whose neighbours tie (or nearly) at the k-th place (these 8-d embeddings
    are crowded: cosines ~0.999); the same table for any number of worker threads. The redshift
    densities pass through the PIT map of the held-out galaxies, which such a tie moves by one
    galaxy: their cumulative distributions agree to within two held-out galaxies' share, as do
    the OOD scores (a distance's rank among the held-out galaxies' distances, which a rounding
    moves past one of them now and then)."""
    import shutil

    from galclip.eval.predict import open_reference, predict
    from galclip.search.index import SCAN_MIN_PER_LIST, ListScan, build_index

    root, _, _ = catalogs
    ref_dir = tmp_path / "ref"
    shutil.copytree(root / "ref", ref_dir)
    build_index(ref_dir, "spectrum", kind="ivf", nlist=16, verbose=False)
    ref = open_reference(ref_dir, "spectrum")
    index, n_cal = ref.searchers["spectrum"].scan.index, (~ref.pool).sum()
    assert 700 * index.nprobe >= SCAN_MIN_PER_LIST * index.nlist       # the chunks are scanned
    for query in (root / "query", ref_dir):
        kw = {"from_": "spectrum", "k": 16, "chunk_rows": 700}
        scan = predict(query, ref_dir, workers=1, **kw).table
        assert scan.equals(predict(query, ref_dir, workers=3, **kw).table)
        with monkeypatch.context() as m:
            m.setattr(ListScan, "of", classmethod(lambda cls, index: None))
            plain = predict(query, ref_dir, workers=1, **kw).table
        assert scan.column_names == plain.column_names
        for c in scan.column_names:
            a, b = (np.asarray(t.column(c).to_pylist(), float) for t in (scan, plain))
            if c == "redshift_pdf":
                cdf_a, cdf_b = (np.cumsum(x, 1) / x.sum(1, keepdims=True) for x in (a, b))
                same = np.abs(cdf_a - cdf_b).max(1) <= 2 / n_cal
            else:                  # the OOD score: the rank of a distance among the held-out's
                tol = 2 / n_cal if c == "ood_score" else 1e-4
                same = np.isclose(a, b, rtol=1e-4, atol=tol, equal_nan=True)
            assert same.mean() >= 0.98, (query, c, same.mean())
            if c in ("object_id", "n_neighbours"):
                assert np.array_equal(a, b), (query, c)


def test_query_chunks_are_read_lazily(catalogs, monkeypatch):
    """Memory is bounded by the chunk: the first chunk is yielded after reading only the row
    groups it needs (plus one), not the whole catalog."""
    from galclip import storage
    from galclip.eval.predict import iter_query
    from galclip.search.catalog import read_catalog_manifest

    root, _, _ = catalogs
    read = []
    groups = storage.iter_row_groups

    def counted(*a, **k):
        for t in groups(*a, **k):
            read.append(t.num_rows)
            yield t
    monkeypatch.setattr(storage, "iter_row_groups", counted)
    chunks = iter_query(root / "query", read_catalog_manifest(root / "query"), ["spectrum"], 10)
    ids, _ = next(chunks)
    assert len(ids) >= 10 and sum(read[:-1]) < 10 <= sum(read) < 3000
    assert len(ids) + sum(len(i) for i, _ in chunks) == 3000


def test_weighted_quantiles_equal_one_quantile_at_a_time():
    """All levels in one pass give the values of the per-level loop (NaN labels, zero weights,
    rows with one or no usable label)."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=(300, 40, 2))
    y[rng.uniform(size=y.shape) < 0.1] = np.nan
    y[5:8, :39] = np.nan
    w = np.where(rng.uniform(size=(300, 40)) < 0.2, 0.0, rng.uniform(size=(300, 40)))
    w[:3] = 0.0
    qs = (0.16, 0.84, 0.025, 0.975, 0.0, 1.0)
    got = cf.weighted_quantiles(y, w, qs)
    for j, q in enumerate(qs):
        assert np.array_equal(got[:, j], _one_quantile(y, w, q), equal_nan=True), q


def _one_quantile(y, w, q):
    """A weighted quantile (n, P) by the Hazen rule, one level at a time (the reference)."""
    ww = w[:, :, None] * np.isfinite(y)
    order = np.argsort(np.where(np.isfinite(y), y, np.inf), axis=1)
    ys, ws = np.take_along_axis(y, order, 1), np.take_along_axis(ww, order, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = (np.cumsum(ws, 1) - ws / 2) / ws.sum(1, keepdims=True)
    pos = np.where(ws > 0, pos, np.inf)
    hi = np.clip((pos < q).sum(1), 1, y.shape[1] - 1)
    p_lo, p_hi = (np.take_along_axis(pos, i[:, None], 1)[:, 0] for i in (hi - 1, hi))
    y_lo, y_hi = (np.take_along_axis(ys, i[:, None], 1)[:, 0] for i in (hi - 1, hi))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip((q - p_lo) / (p_hi - p_lo), 0.0, 1.0)
    t = np.where(np.isfinite(p_hi), t, 0.0)
    return np.where(np.isfinite(y_lo), y_lo + t * (np.nan_to_num(y_hi) - y_lo), np.nan)


def test_galaxies_unlike_the_reference_are_flagged_unfamiliar(catalogs, tmp_path):
    """Galaxies drawn like the reference are flagged about 1 % of the time; embeddings off the
    reference's manifold (random directions) nearly always, whatever labels their neighbours
    would lend them."""
    from galclip.eval.predict import predict
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    root, _, _ = catalogs
    t = predict(root / "query", root / "ref", from_="spectrum", properties=["redshift"], k=16).table
    score, flag = t.column("ood_score").to_numpy(), t.column("unfamiliar").to_numpy()
    assert ((0 <= score) & (score <= 1)).all() and flag.mean() < 0.04
    rng = np.random.default_rng(5)
    odd = rng.normal(size=(200, 8)).astype(np.float32)
    odd /= np.linalg.norm(odd, axis=1, keepdims=True)
    meta = {"object_id": np.arange(200, dtype=np.int64), "ra": np.zeros(200), "dec": np.zeros(200),
            "redshift": np.full(200, np.nan, np.float32)}
    write_catalog(tmp_path / "odd", meta, {"spectrum": odd, "image": odd}, model_sha256=SHA)
    build_index(tmp_path / "odd", "spectrum", kind="flat", verbose=False)
    t = predict(tmp_path / "odd", root / "ref", from_="spectrum", properties=["redshift"], k=16).table
    assert t.column("unfamiliar").to_numpy().mean() > 0.9
    assert np.median(t.column("ood_score").to_numpy()) > 0.99


def test_refuses_mismatched_references(catalogs, tmp_path):
    from galclip.eval.predict import PredictError, predict

    root, _, _ = catalogs
    synthetic_catalog(tmp_path / "other-model", 300, seed=2, sha="b" * 64)
    with pytest.raises(PredictError, match="model.sha256"):
        predict(root / "query", tmp_path / "other-model")
    with pytest.raises(PredictError, match=r"no numeric label column\(s\) \['log_sfr'\]"):
        predict(root / "query", root / "ref", properties=["log_sfr"])
    with pytest.raises(PredictError, match="numeric label"):
        predict(root / "query", root / "ref", properties=["quenched"])  # a class, not a quantity
    with pytest.raises(PredictError, match="too few held-out"):
        synthetic_catalog(tmp_path / "small", 60, seed=3)
        predict(root / "query", tmp_path / "small")
    with pytest.raises(ValueError, match="unknown table format"):
        predict(root / "query", root / "ref", tmp_path / "p.txt")
    from galclip.search.catalog import write_catalog

    n = 500   # a reference with no spectra, and one whose labels are all missing
    meta = {"object_id": np.arange(n), "ra": np.zeros(n), "dec": np.zeros(n),
            "redshift": np.full(n, np.nan, np.float32), "log_mstar": np.ones(n)}
    write_catalog(tmp_path / "no-spec", meta, {"image": _curve(np.linspace(0, 1, n),
                                                                np.random.default_rng(0))},
                  model_sha256=SHA)
    with pytest.raises(PredictError, match="no spectrum embeddings"):
        predict(root / "query", tmp_path / "no-spec", from_="spectrum", properties=["log_mstar"])
    with pytest.raises(PredictError, match=r"no value \(all NaN\)"):   # nothing labelled
        predict(root / "query", tmp_path / "no-spec", from_="image", properties=["redshift"])


def test_cli_writes_predictions_and_bad_arguments_exit_2(catalogs, tmp_path, capsys):
    from galclip.cli import main

    root, _, _ = catalogs
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(root / "query"), "--reference", str(root / "ref"), "--out",
                 str(out), "--properties", "redshift", "--k", "16"]) == 0
    assert pq.read_table(out).num_rows == 3000
    assert "coverage" in capsys.readouterr().out
    for bad, msg in ((["--k", "0"], "--k"), (["--from", "x"], "--from"),
                     (["--properties", "nope"], "nope"), (["--out", str(tmp_path / "x.txt")],
                                                           "unknown table format")):
        args = ["predict", str(root / "query"), "--reference", str(root / "ref"), "--out",
                str(out), *bad]
        assert main(args) == 2, bad
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err
    assert main(["predict", str(tmp_path / "missing"), "--reference", str(root / "ref"),
                 "--out", str(out)]) == 2


def test_evaluate_photoz_scores_calibrated_redshifts_for_each_source(tmp_path):
    from galclip.eval import plots
    from galclip.eval.photoz import photoz_results, table

    rng = np.random.default_rng(5)
    t = rng.uniform(0, 1, 4000)
    z = 0.05 + 0.4 * t + rng.normal(0, 0.01, 4000)
    emb = _curve(t, rng, noise=0.05)
    phot = np.stack([t + rng.normal(0, 0.2, 4000), rng.normal(size=4000)], 1)
    res = photoz_results({"spectrum": emb[:3000], "photometry": phot[:3000]}, z[:3000],
                         {"spectrum": emb[3000:], "photometry": phot[3000:]}, z[3000:], k=32)
    for source, r in res.items():
        assert abs(r["coverage_68"] - 0.68) < 0.05 and abs(r["coverage_95"] - 0.95) < 0.03
        assert r["pit_ks"] < 0.08 and sum(r["pit_histogram"]) == r["n"] == 1000, source
    assert res["spectrum"]["sigma_nmad"] < res["photometry"]["sigma_nmad"]
    assert res["spectrum"]["crps"] < res["photometry"]["crps"]
    head, rows = table(res)
    assert head[1] == "PIT KS" and [r[0] for r in rows] == ["spectrum", "photometry"]
    assert plots.pit_histograms(res, tmp_path / "pit.png").stat().st_size > 0


def test_report_shows_the_photoz_table_and_pit_figure(tmp_path):
    from galclip.eval import plots
    from galclip.eval.report import render_markdown, tables
    from test_eval_report import metrics

    m = metrics()
    m["photoz"] = {"spectrum": {"pit_ks": 0.031, "pit_histogram": [5] * 20, "coverage_68": 0.69,
                                "coverage_95": 0.951, "crps": 0.004, "sigma_nmad": 0.006,
                                "bias": 0.0001, "eta_0.15": 0.0, "eta_0.05": 0.01, "r2": 0.97,
                                "n": 100}}
    head, rows = tables(m)["photoz"]
    assert rows == [["spectrum", "0.0310", "0.6900", "0.9510", "0.0040", "0.0060", "0.0001",
                     "0.0000", "0.0100", "100"]]
    fig = plots.pit_histograms(m["photoz"], tmp_path / "figures" / "pit.png", 30)
    md = render_markdown(m, [("Zero-shot redshift PIT", fig)], tmp_path)
    assert "Zero-shot redshift densities and intervals" in md and "figures/pit.png" in md
    assert "densities and intervals" not in render_markdown(metrics(), [], tmp_path)


def test_the_redshift_check_is_refused_where_the_reference_cannot_have_one(catalogs):
    """A reference written from arrays names no dataset, so its OOD score cannot calibrate the
    redshift check: --redshift-check says so instead of silently scoring by distance."""
    from galclip.eval.predict import PredictError, predict

    root, _, _ = catalogs
    with pytest.raises(PredictError, match="no redshift check"):
        predict(root / "query", root / "ref", from_="spectrum", redshift_check=True)
    with pytest.raises(PredictError, match="needs spectra"):
        predict(root / "query", root / "ref", from_="image", redshift_check=True)


def test_calibration_catalogs_add_calibration_galaxies_and_are_checked(catalogs, tmp_path):
    from galclip.eval.predict import PredictError, interval_columns, predict

    root, _, query = catalogs
    synthetic_catalog(tmp_path / "cal", 2000, seed=5)        # same population, other galaxies
    base = predict(root / "query", root / "ref", from_="spectrum", k=32)
    res = predict(root / "query", root / "ref", from_="spectrum", k=32,
                  calibration=[tmp_path / "cal"])
    n_ref = base.metadata["reference"]["n_calibration"]
    assert base.metadata["calibration"]["n_calibration"]["redshift"] == n_ref
    assert res.metadata["calibration"]["n_calibration"]["redshift"] == n_ref + 2000
    assert res.metadata["calibration"]["redshift_pdf"]["n_calibration"] == n_ref + 2000
    assert [c["n_rows"] for c in res.metadata["calibration_catalogs"]] == [2000]
    assert base.metadata["calibration_catalogs"] == []
    assert res.metadata["calibration"]["interval_factor"] != \
        base.metadata["calibration"]["interval_factor"]
    t = res.table
    for prop in ("redshift", "log_mstar"):      # still calibrated on the new galaxies
        truth = query[prop]
        lo68, hi68, lo95, hi95 = (t.column(c).to_numpy() for c in interval_columns(prop))
        assert abs(np.mean((lo68 <= truth) & (truth <= hi68)) - 0.68) < 0.03, prop
        assert abs(np.mean((lo95 <= truth) & (truth <= hi95)) - 0.95) < 0.03, prop
    with pytest.raises(PredictError, match="reference's own galaxies"):
        predict(root / "query", root / "ref", calibration=[root / "ref"])
    with pytest.raises(PredictError, match="galaxies being predicted"):
        predict(root / "query", root / "ref", calibration=[root / "query"])
    synthetic_catalog(tmp_path / "other-model", 300, seed=6, sha="c" * 64)
    with pytest.raises(PredictError, match="model.sha256"):
        predict(root / "query", root / "ref", calibration=[tmp_path / "other-model"])
    from galclip.search.catalog import write_catalog

    n = 300
    write_catalog(tmp_path / "no-mass", {"object_id": np.arange(n), "ra": np.zeros(n),
                                         "dec": np.zeros(n), "redshift": np.ones(n, np.float32)},
                  {"spectrum": _curve(np.linspace(0, 1, n), np.random.default_rng(0))},
                  model_sha256=SHA)
    with pytest.raises(PredictError, match=r"no-mass: no label column\(s\) \['log_mstar'\]"):
        predict(root / "query", root / "ref", calibration=[tmp_path / "no-mass"])


def test_cli_calibration_option(catalogs, tmp_path, capsys):
    from galclip.cli import main

    root, _, _ = catalogs
    synthetic_catalog(tmp_path / "cal", 400, seed=7)
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(root / "query"), "--reference", str(root / "ref"), "--out",
                 str(out), "--properties", "redshift", "--calibration", str(tmp_path / "cal")]) == 0
    assert "and 400 of 1 calibration catalog(s)" in capsys.readouterr().out
    assert main(["predict", str(root / "query"), "--reference", str(root / "ref"), "--out",
                 str(out), "--calibration", str(root / "query")]) == 2
    err = capsys.readouterr().err
    assert "galaxies being predicted" in err and "Traceback" not in err
