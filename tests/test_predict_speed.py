"""The fast paths of galclip predict give exactly what the plain paths give: the list-ordered
IVF search, the summaries of the neighbours, the Parquet output."""
from __future__ import annotations

import numpy as np
import pytest


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["ivf", "flat"])
def test_list_ordered_search_equals_plain_search(kind):
    """Scores and positions bit for bit, ties (duplicated vectors) and short lists included,
    whatever the number of OpenMP threads (IndexIVF::search slices the batch by thread)."""
    import faiss

    from galclip.search.index import batch_search, create_index, set_search_param

    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(3000, 16)))
    base[1000:1100] = base[:100]                         # exact duplicates: tied scores
    index = create_index(base, kind, nlist=32)
    if kind == "ivf":
        assert type(index) is faiss.IndexIVFFlat                 # the list-ordered path
        set_search_param(index, kind, 5)
    queries = np.concatenate([_unit(rng.normal(size=(700, 16))), base[:50]])
    threads = faiss.omp_get_max_threads()
    try:
        for nt, k in ((1, 1), (1, 10), (1, 200), (1, 600), (3, 96), (64, 96)):
            faiss.omp_set_num_threads(nt)   # slices of the batch: 1, 3, 64 (< 20 queries each)
            want = index.search(queries, k)                  # 600: more than 5 lists hold
            got = batch_search(index, queries, k)
            assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True)), (nt, k)
    finally:
        faiss.omp_set_num_threads(threads)


def _ivf(rng, n=3000, d=16, nlist=32, nprobe=5):
    from galclip.search.index import create_index, set_search_param

    base = _unit(rng.normal(size=(n, d)))
    base[1000:1100] = base[:100]                         # exact duplicates: tied scores
    index = create_index(base, "ivf", nlist=nlist)
    set_search_param(index, "ivf", nprobe)
    return base, index


@pytest.mark.parametrize("k", [1, 10, 96, 600])
def test_list_scan_finds_what_faiss_finds(k, monkeypatch):
    """The scan by matrix products over the probed lists returns FAISS's IVF results: scores to
    float rounding, the same positions but where the k-th place is tied or nearly (duplicated
    vectors; tie order), and the same -1 padding when the probed lists hold fewer than k."""
    import galclip.search.index as gi

    rng = np.random.default_rng(0)
    base, index = _ivf(rng)
    queries = np.concatenate([_unit(rng.normal(size=(700, 16))), base[:50]])
    scan = gi.ListScan.of(index)
    assert scan is not None and len(queries) * index.nprobe >= gi.SCAN_MIN_PER_LIST * index.nlist
    monkeypatch.setattr(gi, "batch_search", None)           # the scan itself, no fallback
    got_s, got_p = scan.search(queries, k)
    want_s, want_p = index.search(queries, k + 1)           # one more: is the k-th place tied?
    assert got_s.shape == got_p.shape == (len(queries), k)
    assert np.array_equal(got_p < 0, want_p[:, :k] < 0)     # padding where the lists run out
    found = want_p[:, :k] >= 0
    assert np.allclose(got_s[found], want_s[:, :k][found], rtol=0, atol=1e-6)
    assert np.all(np.diff(got_s, axis=1) <= 0)              # best first
    tied = (want_p[:, k] >= 0) & (np.abs(want_s[:, k - 1] - want_s[:, k]) < 1e-5)
    for i in np.flatnonzero(~tied):
        assert set(got_p[i]) == set(want_p[i, :k]), i
    assert tied.mean() < 0.2                                 # the exemption is the exception
    for i in np.flatnonzero(tied):                           # above the tie: the same vectors
        sure = want_s[i, :k] > want_s[i, k] + 1e-5
        assert set(want_p[i, :k][sure]) <= set(got_p[i]), i


def test_list_scan_defers_small_batches_to_faiss():
    """Below SCAN_MIN_PER_LIST queries a probed list the scan is FAISS's search, bit for bit."""
    from galclip.search.index import SCAN_MIN_PER_LIST, ListScan

    rng = np.random.default_rng(1)
    base, index = _ivf(rng)
    scan = ListScan.of(index)
    queries = base[:SCAN_MIN_PER_LIST * index.nlist // index.nprobe - 1]
    got, want = scan.search(queries, 20), index.search(queries, 20)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert ListScan.of(create_flat(base)) is None            # only IVF-Flat is scanned so


def create_flat(base):
    from galclip.search.index import create_index

    return create_index(base, "flat")


def test_dense_parquet_reads_back_the_same_table(tmp_path):
    """predict's Parquet writer skips dictionaries and list-column statistics; the table read
    back equals the default writer's, metadata included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from galclip.search.results import TableWriter

    rng = np.random.default_rng(1)
    pdf = rng.uniform(size=(500, 30)).astype(np.float32)
    table = pa.table({"object_id": np.arange(500, dtype=np.int64),
                      "z": rng.normal(size=500).astype(np.float32),
                      "flag": rng.uniform(size=500) < 0.1,
                      "pdf": pa.FixedSizeListArray.from_arrays(pa.array(pdf.ravel()), 30)})
    for dense in (False, True):
        w = TableWriter(tmp_path / f"{dense}.parquet", "k", {"a": 1}, dense=dense)
        w.write(table.slice(0, 200))
        w.write(table.slice(200))
        w.close()
    plain, dense = (pq.read_table(tmp_path / f"{d}.parquet") for d in (False, True))
    assert dense.equals(plain) and dense.schema.metadata == plain.schema.metadata
    meta = pq.ParquetFile(tmp_path / "True.parquet").metadata.row_group(0)
    columns = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert not any(c.has_dictionary_page for c in columns.values())
    assert columns["z"].is_stats_set and not columns["pdf.list.element"].is_stats_set


def _quantiles_on_nkp(y, w, qs):
    """The weighted quantiles computed on the (n, k, P) layout (the reference path)."""
    ww = w[:, :, None] * np.isfinite(y)
    order = np.argsort(np.where(np.isfinite(y), y, np.inf), axis=1)
    ys, ws = np.take_along_axis(y, order, 1), np.take_along_axis(ww, order, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = (np.cumsum(ws, 1) - ws / 2) / ws.sum(1, keepdims=True)
    pos = np.where(ws > 0, pos, np.inf)
    q = np.asarray(qs, float)[None, :, None]
    hi = np.clip((pos[:, None] < q[..., None, :]).sum(2), 1, y.shape[1] - 1)
    p_lo, p_hi = (np.take_along_axis(pos, i, 1) for i in (hi - 1, hi))
    y_lo, y_hi = (np.take_along_axis(ys, i, 1) for i in (hi - 1, hi))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip((q - p_lo) / (p_hi - p_lo), 0.0, 1.0)
    t = np.where(np.isfinite(p_hi), t, 0.0)
    return np.where(np.isfinite(y_lo), y_lo + t * (np.nan_to_num(y_hi) - y_lo), np.nan)


@pytest.mark.parametrize("n_props", [1, 2, 3])
@pytest.mark.parametrize("finite", [False, True])
def test_weighted_quantiles_equal_the_nkp_arithmetic_bit_for_bit(n_props, finite):
    """Tied labels, NaN labels, zero weights, 0/1 weights (exact matches), rows with no usable
    label, k from 1 to 200; and chunks whose labels are all finite (the path that sorts and
    gathers without masking, and takes each total from the cumulative sum when P > 1)."""
    from galclip.eval.conformal import weighted_quantiles

    rng = np.random.default_rng(n_props)
    qs = (0.16, 0.84, 0.025, 0.975, 0.0, 1.0)
    for k in (1, 2, 7, 64, 200):
        y = rng.normal(size=(600, k, n_props))
        y[:, :, 0] = np.round(y[:, :, 0], 1)
        if not finite:
            y[rng.uniform(size=y.shape) < 0.1] = np.nan
            y[:5] = np.nan
        w = np.where(rng.uniform(size=(600, k)) < 0.2, 0.0, rng.uniform(size=(600, k)))
        w[5:9] = 0.0
        w[10:20] = rng.uniform(size=(10, k)) < 0.3
        w[20:30] *= 10.0 ** rng.integers(-12, 12, size=(10, k))     # weights of any magnitude
        got = weighted_quantiles(y, w, qs)
        assert np.array_equal(got, _quantiles_on_nkp(y, w, qs), equal_nan=True), k


def _pdf_whole_chunk(z, w, grid, robust):
    """The redshift densities binned and smoothed in one pass over all rows (reference path)."""
    from scipy import fft as sp_fft

    from galclip.eval.conformal import silverman_bandwidth

    n = len(z)
    ok = np.isfinite(z) & (w > 0)
    x = np.clip((np.where(ok, z, 0.0) - grid.start) / grid.step - 0.5, 0.0, grid.n - 1.0)
    i0 = np.minimum(np.floor(x).astype(np.int64), grid.n - 2)
    f = x - i0
    sigma = np.minimum(silverman_bandwidth(z, w, grid.step, robust) / grid.step, grid.n / 4)
    pad = int(np.ceil(4 * sigma.max())) + 2
    m = sp_fft.next_fast_len(grid.n + 2 * pad, real=True)
    wk = np.where(ok, w, 0.0)
    at = (np.arange(n) * m)[:, None] + pad + i0
    hist = np.bincount(np.concatenate([at.ravel(), at.ravel() + 1]),
                       np.concatenate([(wk * (1 - f)).ravel(), (wk * f).ravel()]), n * m)
    hist = hist.reshape(n, m).astype(np.float32)
    freq = np.fft.rfftfreq(m).astype(np.float32)
    gain = np.exp(-2 * (np.pi * freq[None] * sigma[:, None].astype(np.float32)) ** 2)
    smooth = sp_fft.irfft(sp_fft.rfft(hist, axis=1, workers=-1) * gain, m, axis=1, workers=-1)
    dens = np.clip(smooth[:, pad:pad + grid.n], 0.0, None).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dens / (dens.sum(1, keepdims=True) * grid.step)


def test_redshift_density_in_blocks_equals_one_pass_bit_for_bit():
    """Blocks of rows (partial last block, rows without neighbours, NaN redshifts, zero
    weights, narrow and wide kernels) give the one-pass densities exactly."""
    from galclip.eval.conformal import ROW_BLOCK, Grid, raw_pdf

    rng = np.random.default_rng(4)
    grid = Grid(0.0, 0.0045, 300)
    for n in (1, 37, ROW_BLOCK + 3):
        centre = rng.normal(0.4, 0.2, (n, 1))
        z = np.abs(centre + rng.normal(0, 0.05, (n, 64)) * rng.uniform(0.01, 3, (n, 1)))
        z[rng.uniform(size=z.shape) < 0.05] = np.nan
        w = np.where(rng.uniform(size=(n, 64)) < 0.1, 0.0, rng.uniform(size=(n, 64)))
        w[n // 2] = 0.0
        robust = rng.uniform(0, 0.1, n)
        for r in (robust, None):
            assert np.array_equal(raw_pdf(z, w, grid, r), _pdf_whole_chunk(z, w, grid, r),
                                  equal_nan=True), n


def test_pit_recalibration_in_blocks_equals_one_pass():
    """The PIT map applied block by block gives the one-pass densities (NaN rows kept)."""
    from galclip.eval.conformal import ROW_BLOCK, Grid, PitCalibration, raw_pdf

    rng = np.random.default_rng(5)
    grid = Grid(0.0, 0.005, 200)
    n = 2 * ROW_BLOCK + 5
    z = np.abs(rng.normal(0.5, 0.2, (n, 1)) + rng.normal(0, 0.03, (n, 32)))
    z[7] = np.nan
    pdf = raw_pdf(z, np.ones((n, 32)), grid)
    pit = PitCalibration.fit(np.concatenate([rng.beta(2, 3, 3000), [0.0, 1.0, 1.0]]))
    got = pit.apply(pdf, grid)
    assert np.isnan(got[7]).all() and np.isfinite(np.delete(got, 7, 0)).all()
    assert np.array_equal(got, _pit_map_plain(pit, pdf, grid), equal_nan=True)


def _pit_map_plain(pit, pdf, grid):
    """The PIT map of all rows at once, with fresh arrays (reference path)."""
    cdf = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(pdf, 1) * grid.step], axis=1)
    cal = np.interp(np.clip(cdf, 0.0, 1.0), pit.x, pit.y)
    with np.errstate(invalid="ignore"):
        out = np.diff(cal, axis=1) / grid.step
    return np.where(np.isfinite(pdf).all(1, keepdims=True), out, np.nan)


def _first_allowed_plain(searcher, s, p, k, self_rows):
    """The neighbour selection as a stable sort of the allowed results first (reference)."""
    r = np.where(p >= 0, searcher.positions_rows[np.maximum(p, 0)], -1)
    ok = (p >= 0) & searcher.allowed[np.maximum(r, 0)]
    if self_rows is not None:
        ok &= r != self_rows[:, None]
    order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
    r, s, ok = (np.take_along_axis(a, order, 1) for a in (r, s, ok))
    d = np.sqrt(np.maximum(s, 0)) if searcher.l2 else np.sqrt(np.maximum(2 - 2 * s, 0))
    got = ok.sum(1)
    pad = k - r.shape[1]
    r, d = np.where(ok, r, -1), np.where(ok, d, np.inf)
    if pad > 0:
        r = np.pad(r, ((0, 0), (0, pad)), constant_values=-1)
        d = np.pad(d, ((0, 0), (0, pad)), constant_values=np.inf)
    return r, d, got


@pytest.mark.parametrize("l2", [False, True])
def test_neighbour_selection_equals_the_stable_sort(l2):
    """Every row with its k allowed results (the compacting path), rows short of k, missing
    results (-1), the query's own row left out, and fewer results than k (padding)."""
    from galclip.eval.predict import Searcher

    rng = np.random.default_rng(7)
    n_ref, n = 500, 300
    positions_rows = rng.permutation(n_ref)
    allowed = rng.uniform(size=n_ref) < 0.8
    searcher = Searcher(None, positions_rows, allowed, l2=l2)
    for fetch, k, frac_short in ((40, 10, 0.0), (40, 10, 0.3), (12, 10, 0.0), (6, 10, 0.0)):
        p = np.stack([rng.permutation(n_ref)[:fetch] for _ in range(n)])
        s = np.sort(rng.uniform(-1, 1, (n, fetch)).astype(np.float32), 1)[:, ::-1].copy()
        short = rng.uniform(size=n) < frac_short
        p[short, fetch // 3:] = -1                     # a list that ran out of vectors
        own = np.where(rng.uniform(size=n) < 0.5, positions_rows[p[:, 0]], -1)
        for self_rows in (None, own):
            got = searcher._one(s, p, k, self_rows)
            want = _first_allowed_plain(searcher, s, p, k, self_rows)
            for a, b in zip(got, want, strict=True):
                assert a.shape == b.shape and np.array_equal(a.astype(b.dtype), b), (fetch, k)


def test_calibrated_density_block_by_block_equals_recalibrating_all_rows():
    """The densities recalibrated as each block is smoothed (what predict writes) equal the
    PIT map applied to all raw densities, cast to float32 (partial last block, NaN rows, a
    wide kernel that sets the FFT length for every block)."""
    from galclip.eval.conformal import ROW_BLOCK, Grid, PitCalibration, calibrated_pdf, raw_pdf

    rng = np.random.default_rng(8)
    grid = Grid(0.0, 0.004, 250)
    n = 2 * ROW_BLOCK + 17
    z = np.abs(rng.normal(0.5, 0.2, (n, 1)) + rng.normal(0, 0.03, (n, 40)))
    z[3] = np.nan
    z[9] *= 4.0                                                   # a wide kernel
    w = rng.uniform(0.1, 2.0, (n, 40))
    robust = rng.uniform(0, 0.05, n)
    pit = PitCalibration.fit(np.concatenate([rng.beta(2, 3, 2000), [0.0, 1.0]]))
    want = _pit_map_plain(pit, raw_pdf(z, w, grid, robust), grid).astype(np.float32)
    got = calibrated_pdf(z, w, grid, pit, robust)
    assert got.dtype == np.float32 and np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[3]).all()


def test_estimate_with_the_pit_map_changes_no_column():
    """predict's estimate (labels gathered without masking, densities recalibrated block by
    block) gives the columns of the plain estimate followed by the PIT map."""
    from galclip.eval.conformal import Grid, PitCalibration
    from galclip.eval.predict import estimate

    rng = np.random.default_rng(9)
    labels = np.stack([rng.uniform(0, 1, 400), rng.normal(10, 1, 400)], 1)
    rows = np.stack([rng.permutation(400)[:32] for _ in range(700)])
    dist = np.sort(rng.uniform(0.1, 1, (700, 32)), 1)
    w = 1 / dist
    w /= w.sum(1, keepdims=True)
    grid = Grid(0.0, 0.005, 240)
    pit = PitCalibration.fit(rng.beta(2, 2, 1000))
    for missing in (False, True):
        r = rows.copy()
        if missing:
            r[5, 20:] = -1
        plain, fast = estimate(labels, r, w, dist, 0, grid), estimate(labels, r, w, dist, 0, grid,
                                                                      pit)
        assert fast.pdf is None and plain.calibrated_pdf is None
        want = _pit_map_plain(pit, plain.pdf, grid).astype(np.float32)
        assert np.array_equal(fast.calibrated_pdf, want)
        for a in ("point", "raw", "n_used", "distance"):
            assert np.array_equal(getattr(fast, a), getattr(plain, a), equal_nan=True), a


@pytest.mark.parametrize("n_props", [1, 2, 3])
def test_weighted_mean_of_finite_labels_equals_the_masked_arithmetic(n_props):
    """All-finite labels (the path without the mask) and labels with NaN, k from 1 to 200,
    zero weights, weights of any magnitude."""
    from galclip.eval.conformal import weighted_mean

    rng = np.random.default_rng(10 + n_props)
    for k in (1, 5, 64, 200):
        y = rng.normal(size=(500, k, n_props))
        w = np.where(rng.uniform(size=(500, k)) < 0.1, 0.0, rng.uniform(size=(500, k)))
        w[:50] *= 10.0 ** rng.integers(-12, 12, size=(50, k))
        for labels in (y, np.where(rng.uniform(size=y.shape) < 0.05, np.nan, y)):
            ww = w[:, :, None] * np.isfinite(labels)
            with np.errstate(invalid="ignore", divide="ignore"):
                want = (ww * np.nan_to_num(labels)).sum(1) / ww.sum(1)
            assert np.array_equal(weighted_mean(labels, w), want, equal_nan=True), k


def test_bandwidth_without_masking_equals_the_masked_arithmetic():
    """Silverman's bandwidth of rows whose redshifts are all finite with positive weights (no
    masking) and of rows with NaN or zero weights."""
    from galclip.eval.conformal import silverman_bandwidth

    rng = np.random.default_rng(12)
    z = rng.uniform(0, 1, (400, 64))
    w = rng.uniform(0.1, 3.0, (400, 64))
    robust = rng.uniform(0, 0.1, 400)

    def plain(z, w):
        ok = np.isfinite(z) & (w > 0)
        ww, zz = np.where(ok, w, 0.0), np.where(ok, z, 0.0)
        tot = np.maximum(ww.sum(1), 1e-300)
        mean = (ww * zz).sum(1) / tot
        sd = np.sqrt(np.maximum((ww * (zz - mean[:, None]) ** 2).sum(1) / tot, 0.0))
        spread = np.where(robust > 0, np.minimum(sd, robust), sd)
        n_eff = tot ** 2 / np.maximum((ww ** 2).sum(1), 1e-300)
        return np.maximum(0.9 * spread * np.maximum(n_eff, 1.0) ** -0.2, 0.004)

    zn, wz = np.where(rng.uniform(size=z.shape) < 0.05, np.nan, z), np.where(w < 0.3, 0.0, w)
    for zz, ww in ((z, w), (zn, w), (z, wz)):
        assert np.array_equal(silverman_bandwidth(zz, ww, 0.004, robust), plain(zz, ww))


@pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")
def test_median_distance_equals_nanmedian():
    """Sorted neighbours with the used ones first (read off: counts 0, 1, odd, even, ties,
    all K) and rows that are not (two modalities side by side: NumPy's nanmedian)."""
    from galclip.eval.predict import median_distance

    rng = np.random.default_rng(13)
    for k in (1, 2, 9, 64):
        dist = np.sort(np.round(rng.uniform(0, 1, (300, k)), 2), 1)
        used = np.arange(k)[None] < rng.integers(0, k + 1, 300)[:, None]
        used[0], used[1] = False, True
        for d, u in ((dist, used), (dist[:, ::-1].copy(), used),
                     (np.concatenate([dist, dist], 1), np.concatenate([used, used], 1))):
            with np.errstate(invalid="ignore"):
                want = np.nanmedian(np.where(u, d, np.nan), 1)
            assert np.array_equal(median_distance(d, u), want, equal_nan=True), k
