"""Zero-shot predictions a scientist can use: k-NN estimates from a labelled reference catalog,
with intervals and a redshift density calibrated by split conformal prediction.

For every galaxy of an embedding catalog, its k nearest neighbours in a labelled reference
catalog (the reference's FAISS index; in the image or spectrum space, or both) give a point
estimate (inverse-distance weighted mean, as AstroCLIP's zero-shot k-NN, Parker et al. 2024,
Sec. 5.1), 68 % and 95 % intervals and, for redshift, a density on a fixed grid. The neighbour
pool is the reference's training split and its look-up-only ``reference`` rows (``galclip
simulate --reference``); its val + test galaxies (held out from the pool and, when the reference
is the model's own dataset, never trained on) calibrate the intervals
and the density (``galclip.eval.conformal``: CQR-r intervals, PIT-recalibrated density). On new
galaxies from the reference's population the 68 % interval then holds the truth 68 % of the
time (marginally, over galaxies; not for every kind of galaxy separately).

Query and reference may be different catalogs whose ids overlap: a galaxy is left out of its
own neighbours only when the query *is* the reference (same catalog, or one embedded from the
same dataset). The query is read and predicted ``chunk_rows`` rows at a time and written as it
goes, so memory is bounded by the chunk (times the chunks in flight on the worker threads,
``workers + 1``), the reference's labels and its index. Each chunk costs one index search per
modality: the OOD score below reads its k-th-neighbour distance from the same search.

Every row also says how unfamiliar the galaxy is to the reference (``ood_score``,
``unfamiliar``: :mod:`galclip.search.ood`, calibrated so that 1 % of the reference's own held-out
galaxies are flagged; with ``--from both`` the more unfamiliar of the two modalities), so a
galaxy unlike any reference galaxy is flagged instead of silently given its neighbours' labels.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from galclip.eval.conformal import (
    LEVELS,
    MIN_BINS,
    MIN_CALIBRATION,
    Grid,
    IntervalCalibration,
    PitCalibration,
    calibrated_pdf,
    cdf_at,
    coverage,
    distance_weights,
    pit_ks,
    raw_intervals,
    raw_pdf,
    weighted_mean,
)

K = 64
CHUNK_ROWS = 8192
GRID_SAMPLE = 1000   # held-out galaxies whose neighbours set the redshift grid's bins
FROM = ("image", "spectrum", "both")
NOT_LABELS = ("object_id", "ra", "dec")
METADATA_KEY = "galclip_predict"
FETCH_MARGIN = 8
# Index kinds whose best k results are the same however many are asked for (exact, and IVF
# scanning a fixed set of lists); for these the OOD score is read from the prediction's own
# search. HNSW (ef grows with k) and re-ranked compressed indexes are searched again.
DEPTH_FREE_KINDS = ("flat", "ivf")


class PredictError(ValueError):
    """A reference or query that cannot be predicted from; the message names file and field."""


def interval_columns(prop: str) -> list[str]:
    """``{prop}_lo68, {prop}_hi68, {prop}_lo95, {prop}_hi95`` (for LEVELS)."""
    return [f"{prop}_{side}{round(lev * 100)}" for lev in LEVELS for side in ("lo", "hi")]


def label_columns(meta: dict[str, np.ndarray]) -> list[str]:
    """The numeric labels of a catalog: float columns other than ra/dec (integer columns are
    ids or class labels, not quantities to regress)."""
    return [c for c, v in meta.items() if v.dtype.kind == "f" and c not in NOT_LABELS]


def modalities_of(from_: str) -> tuple[str, ...]:
    if from_ not in FROM:
        raise PredictError(f"--from {from_!r}: choose from {FROM}")
    return ("image", "spectrum") if from_ == "both" else (from_,)


# ----------------------------------------------------------------------------- neighbours
@dataclass
class Searcher:
    """The k nearest allowed reference rows of query vectors in one FAISS index.

    ``allowed`` (reference rows,) marks the neighbour pool. Inner-product indexes hold unit
    vectors (distance = sqrt(2 - 2 cos)); L2 indexes return squared distances. Rows are asked
    for with a margin for the rows the pool or the self-exclusion drops; the few queries still
    short of k are asked again with a larger margin.
    """

    index: Any
    positions_rows: np.ndarray   # (M,) reference row of each index position
    allowed: np.ndarray          # (N,) bool over reference rows
    l2: bool = False
    depth_free: bool = False     # the top k results do not depend on how many are asked for
    scan: Any = None             # a ListScan of the index (large batches by matrix products)

    def search(self, q: np.ndarray, k: int, self_rows: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(rows (n, k) int64, -1 where none; distances (n, k) float64, inf where none)."""
        rows, dist, _ = self.search_with_kth(q, k, self_rows)
        return rows, dist

    def search_with_kth(self, q: np.ndarray, k: int, self_rows: np.ndarray | None = None,
                        kth: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`search`, plus (n,) the cosine distance to the ``kth`` nearest vector of
        the *whole* index, own row left out (:func:`galclip.search.ood.kth_of_results`), read
        from the same search (NaN for non-finite queries; None without ``kth``)."""
        from galclip.search.ood import kth_of_results

        n = len(q)
        rows = np.full((n, k), -1, np.int64)
        dist = np.full((n, k), np.inf)
        kd = None if kth is None else np.full(n, np.nan)
        todo = np.flatnonzero(np.isfinite(q).all(1))
        frac = max(self.allowed[self.positions_rows].mean(), 1e-3)
        fetch = max(int(np.ceil(k / frac * 1.1)) + FETCH_MARGIN, (kth or 0) + 1)
        ntotal = len(self.positions_rows)
        first = True
        while len(todo):
            f = min(fetch, ntotal)
            every = len(todo) == n                          # all rows: no copies to gather
            own = self_rows if every or self_rows is None else self_rows[todo]
            s, p = self._search(q if every else q[todo], f)
            if kd is not None and first:                    # the first pass holds every query
                kd[todo] = kth_of_results(s, p, self.positions_rows, kth, own)
            first = False
            r, d, got = self._one(s, p, k, own)
            if every:
                rows[:], dist[:] = r, d
            else:
                rows[todo], dist[todo] = r, d
            todo = todo[(got < k) & (f < ntotal)]
            fetch *= 4
        return rows, dist, kd

    def _search(self, q: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
        from galclip.search.index import batch_search

        return self.scan.search(q, f) if self.scan is not None else batch_search(self.index, q, f)

    def _one(self, s, p, k, self_rows):
        """The first k allowed results of each row, in the search's order (rows (n, k), -1
        where none; distances (n, k); allowed results found (n,), at most k). Rows with their
        k are compacted with one boolean mask; the few rows short of k are laid out apart."""
        valid = p >= 0
        if valid.all():
            r = self.positions_rows[p]
            ok = self.allowed[r]
        else:
            r = np.where(valid, self.positions_rows[np.maximum(p, 0)], -1)
            ok = valid & self.allowed[np.maximum(r, 0)]
        if self_rows is not None:
            ok &= r != self_rows[:, None]
        d = np.sqrt(np.maximum(s, 0)) if self.l2 else np.sqrt(np.maximum(2 - 2 * s, 0))
        rank = np.cumsum(ok, 1, dtype=np.int32)                  # (n, F): allowed so far
        keep = ok & (rank <= k)
        got = np.minimum(rank[:, -1], k).astype(np.int64)
        if s.shape[1] < k:                                        # every row is padded
            return (*first_k(r, d, keep, rank, k), got)
        short = np.flatnonzero(got < k)
        kept_short = keep[short]
        keep[short] = np.arange(s.shape[1]) < k                   # any k; laid out below
        out_r, out_d = r[keep].reshape(len(r), k), d[keep].reshape(len(r), k)
        if len(short):
            out_r[short], out_d[short] = first_k(r[short], d[short], kept_short, rank[short], k)
        return out_r, out_d, got


def first_k(r: np.ndarray, d: np.ndarray, keep: np.ndarray, rank: np.ndarray, k: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Rows (n, k) and distances (n, k) of the kept results of (n, F) search results, each at
    its ``rank`` (1-based) among them; -1 and inf where a row has fewer than k."""
    out_r, out_d = np.full((len(r), k), -1, np.int64), np.full((len(r), k), np.inf, d.dtype)
    i, j = np.nonzero(keep)
    out_r[i, rank[i, j] - 1], out_d[i, rank[i, j] - 1] = r[i, j], d[i, j]
    return out_r, out_d


def combine(results: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray,
                                                                         np.ndarray]:
    """Neighbour rows (n, K), weights (n, K) and distances (n, K) of one or several modalities:
    each modality's inverse-distance weights sum to one, then modalities that found neighbours
    share the weight equally (an equal mixture of their neighbour distributions)."""
    rows = np.concatenate([r for r, _ in results], 1) if len(results) > 1 else results[0][0]
    dist = np.concatenate([d for _, d in results], 1) if len(results) > 1 else results[0][1]
    parts = []
    for r, d in results:
        w = distance_weights(d, r >= 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            parts.append(np.nan_to_num(w / w.sum(1, keepdims=True)))
    w = np.concatenate(parts, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.nan_to_num(w / w.sum(1, keepdims=True))
    return rows, w, dist


# ----------------------------------------------------------------------------- estimates
@dataclass
class Estimates:
    """Raw (uncalibrated) estimates of n galaxies: point (n, P), raw intervals (n, L, 2, P),
    raw redshift densities (n, G) or None, neighbours used (n,) and their median distance (n,);
    ``calibrated_pdf``: the recalibrated densities (n, G) float32 instead of the raw ones, when
    :func:`estimate` was given the PIT map."""

    point: np.ndarray
    raw: np.ndarray
    pdf: np.ndarray | None
    n_used: np.ndarray
    distance: np.ndarray
    calibrated_pdf: np.ndarray | None = None


def estimate(labels: np.ndarray, rows: np.ndarray, w: np.ndarray, dist: np.ndarray,
             z_col: int | None, grid: Grid | None, pit: PitCalibration | None = None
             ) -> Estimates:
    """The neighbours' label distribution of each query, summarised (see Estimates). With
    ``pit`` the redshift densities come out recalibrated (float32), block by block."""
    found = rows >= 0
    y = labels[rows] if found.all() else np.where(found[:, :, None], labels[np.maximum(rows, 0)],
                                                   np.nan)                       # (n, K, P)
    used = found & (w > 0)
    d_med = median_distance(dist, used)
    raw = raw_intervals(y, w)
    pdf = calibrated = None
    if z_col is not None and grid is not None:   # robust spread: half the raw 16-84 % range
        robust = (raw[:, 0, 1, z_col] - raw[:, 0, 0, z_col]) / 2
        if pit is None:
            pdf = raw_pdf(y[:, :, z_col], w, grid, robust)
        else:
            calibrated = calibrated_pdf(y[:, :, z_col], w, grid, pit, robust)
    return Estimates(weighted_mean(y, w), raw, pdf, used.sum(1), d_med, calibrated)


def median_distance(dist: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Median (n,) of each row's used distances (n, K), NaN where none: ``np.nanmedian`` of the
    masked rows. One modality's neighbours come nearest first with the used ones in front; the
    median of such a sorted prefix is read off as NumPy computes it, (low + high) / 2 of the
    middle pair (the middle value twice when the count is odd)."""
    if not used.any():
        return np.full(len(dist), np.nan)
    prefix = (used[:, :-1] >= used[:, 1:]).all()
    if not (prefix and ((dist[:, 1:] >= dist[:, :-1]) | ~used[:, 1:]).all()):
        with np.errstate(invalid="ignore"):
            return np.nanmedian(np.where(used, dist, np.nan), 1)
    m = used.sum(1)
    hi = np.minimum(m // 2, dist.shape[1] - 1)
    lo = np.maximum(np.where(m % 2 == 1, hi, hi - 1), 0)
    at = np.arange(len(dist))
    return np.where(m > 0, (dist[at, lo] + dist[at, hi]) / 2, np.nan)


@dataclass
class Calibration:
    """What the held-out reference galaxies taught: interval factors and the PIT map."""

    intervals: IntervalCalibration
    pit: PitCalibration | None
    summary: dict[str, Any] = field(default_factory=dict)


def pit_of(est: Estimates, grid: Grid | None, z_true: np.ndarray) -> np.ndarray | None:
    """PIT values (n,) of the raw redshift densities at the truths (NaN where either is
    missing); None without densities."""
    if est.pdf is None:
        return None
    ok = np.isfinite(z_true) & np.isfinite(est.pdf).all(1)
    u = np.full(len(z_true), np.nan)
    u[ok] = cdf_at(est.pdf[ok], grid, z_true[ok])
    return u


def calibrate(raw: np.ndarray, truth: np.ndarray, pit: np.ndarray | None,
              properties: Sequence[str], floor: np.ndarray) -> Calibration:
    """Fit the conformal factors on calibration galaxies' raw intervals (n, L, 2, P), truths
    (n, P) and raw redshift PIT values (n,) or None."""
    ok = np.isfinite(truth).sum(0)
    thin = [p for p, n in zip(properties, ok, strict=True) if n < MIN_CALIBRATION]
    if thin:
        raise PredictError(f"reference: too few held-out (non-train) galaxies with a label to "
                           f"calibrate {thin} (need >= {MIN_CALIBRATION}); use a larger reference")
    iv = IntervalCalibration.fit(raw, truth, floor)
    raw_cov = coverage(raw, truth)                                # (L, P)
    summary = {"n_calibration": {p: int(n) for p, n in zip(properties, iv.n, strict=True)},
               "interval_factor": {p: {f"{round(lev * 100)}": float(iv.q[i, j])
                                       for i, lev in enumerate(LEVELS)}
                                   for j, p in enumerate(properties)},
               "raw_coverage": {p: {f"{round(lev * 100)}": float(raw_cov[i, j])
                                    for i, lev in enumerate(LEVELS)}
                                for j, p in enumerate(properties)}}
    pit_map = None
    if pit is not None:
        u = pit[np.isfinite(pit)]
        pit_map = PitCalibration.fit(u)
        summary["redshift_pdf"] = {"n_calibration": int(len(u)), "raw_pit_ks": pit_ks(u)}
    return Calibration(iv, pit_map, summary)


# ----------------------------------------------------------------------------- the reference
@dataclass
class Reference:
    """A labelled reference catalog opened for prediction."""

    path: Path
    manifest: dict[str, Any]
    fingerprint: str
    properties: list[str]
    labels: np.ndarray            # (N, P) float64
    object_id: np.ndarray         # (N,)
    pool: np.ndarray              # (N,) bool: the neighbour pool (train + reference rows)
    searchers: dict[str, Searcher]
    grid: Grid | None
    floor: np.ndarray             # (P,) smallest interval width used to scale scores
    catalog: Any = None           # the reference as a galclip.search.api.Catalog (OOD scores)

    @property
    def z_col(self) -> int | None:
        return self.properties.index("redshift") if "redshift" in self.properties else None


def open_reference(path: str | Path, from_: str = "spectrum",
                   properties: Sequence[str] | None = None, pdf_bins: int | None = None
                   ) -> Reference:
    """Open a reference catalog: labels, pool / calibration split and the modalities' indexes."""
    from galclip.data.splits import rows_in
    from galclip.search.api import Catalog
    from galclip.search.catalog import CatalogError, catalog_fingerprint
    from galclip.search.index import ListScan

    path = Path(path)
    try:
        cat = Catalog(path)
    except CatalogError as e:
        raise PredictError(f"--reference: {e}") from None
    if cat.n_rows == 0:
        raise PredictError(f"{path}: the reference catalog is empty")
    available = label_columns(cat.meta)
    props = list(properties) if properties else available
    missing = [p for p in props if p not in available]
    if missing:
        raise PredictError(f"{path}: the reference has no numeric label column(s) {missing}; "
                           f"it has {available}")
    if not props:
        raise PredictError(f"{path}: the reference catalog has no numeric label columns")
    labels = np.stack([cat.meta[p].astype(np.float64) for p in props], 1)
    empty = [p for p, n in zip(props, np.isfinite(labels).sum(0), strict=True) if n == 0]
    if empty:
        raise PredictError(f"{path}: the reference has no value (all NaN) of {empty}")
    pool = np.zeros(cat.n_rows, bool)     # reference: look-up-only rows (galclip.data.splits)
    pool[rows_in(cat.meta["object_id"], ("train", "reference"), stored=cat.meta.get("split"))] = True
    searchers = {}
    for m in modalities_of(from_):
        if m not in cat.modalities:
            raise PredictError(f"{path}: the reference has no {m} embeddings (it has "
                               f"{cat.modalities}); choose --from accordingly")
        loaded = cat.index(m)
        searchers[m] = Searcher(loaded.index, loaded.rows, pool,
                                depth_free=loaded.kind in DEPTH_FREE_KINDS,
                                scan=ListScan.of(loaded.index))
    if not any((pool[s.positions_rows]).any() for s in searchers.values()):
        raise PredictError(f"{path}: no reference galaxy of the training split has a "
                           f"{'/'.join(searchers)} embedding: nothing to take neighbours from")
    grid = (Grid.covering(labels[:, props.index("redshift")], pdf_bins or MIN_BINS)
            if "redshift" in props else None)   # pdf_bins None: resolve_grid sets the bins
    std = np.nanstd(labels, 0)
    return Reference(path, cat.manifest, catalog_fingerprint(cat.manifest), props, labels,
                     cat.meta["object_id"], pool, searchers, grid,
                     np.where(np.isfinite(std) & (std > 0), 1e-3 * std, 1e-12), cat)


def _vectors(path: Path, manifest: dict, modalities: Sequence[str], rows: np.ndarray
             ) -> dict[str, np.ndarray]:
    from galclip import storage
    from galclip.data.dataset import column_to_numpy
    from galclip.search.catalog import embedding_column

    cols = [embedding_column(m) for m in modalities]
    t = storage.take_rows(path, manifest["shards"], cols, rows)
    return {m: column_to_numpy(t.column(c), manifest["columns"][c]["shape"])
            for m, c in zip(modalities, cols, strict=True)}


def neighbours(ref: Reference, vectors: dict[str, np.ndarray], k: int,
               self_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combined neighbour rows, weights, distances of query vectors (one per modality)."""
    return combine([ref.searchers[m].search(vectors[m], k, self_rows) for m in ref.searchers])


def neighbours_and_ood(ref: Reference, vectors: dict[str, np.ndarray], k: int,
                       self_rows: np.ndarray | None
                       ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """:func:`neighbours` and :func:`ood_columns` of one chunk, with one index search per
    modality where the index allows it (``Searcher.depth_free``): the k-th-neighbour distance
    of the OOD score is read from the prediction's own (deeper) search, the same value a
    separate search would give."""
    from galclip.search.ood import K_OOD, load_reference, ood_scores

    found, kth = [], {}
    for m, searcher in ref.searchers.items():
        if searcher.depth_free:
            rows, dist, kth[m] = searcher.search_with_kth(vectors[m], k, self_rows, K_OOD)
        else:
            rows, dist = searcher.search(vectors[m], k, self_rows)
        found.append((rows, dist))

    def one(m: str, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if m in kth:
            return load_reference(ref.catalog, m).score(kth[m][ok])
        r = ood_scores(ref.catalog, m, vectors[m][ok],
                       self_rows=None if self_rows is None else self_rows[ok])
        return r["ood_score"], r["unfamiliar"]

    return combine(found), larger_of_modalities(vectors, one)


def larger_of_modalities(vectors: dict[str, np.ndarray],
                         score: Callable[[str, np.ndarray], tuple[np.ndarray, np.ndarray]]
                         ) -> dict[str, np.ndarray]:
    """``ood_score`` (n,) and ``unfamiliar`` (n,) of one chunk: the larger score of the
    modalities and either flag; ``score(modality, ok)`` scores the rows ``ok`` that have an
    embedding of it. NaN / False where a galaxy has none."""
    n = len(next(iter(vectors.values())))
    best, flagged = np.full(n, np.nan), np.zeros(n, bool)
    for m, v in vectors.items():
        ok = np.isfinite(v).all(1)
        if ok.any():
            sc, flag = score(m, ok)
            best[ok] = np.fmax(best[ok], sc)
            flagged[ok] |= np.asarray(flag, bool)
    return {"ood_score": best.astype(np.float32), "unfamiliar": flagged}


@dataclass
class CalibrationCatalog:
    """A labelled catalog of galaxies outside the neighbour pool that calibrates beside the
    reference's own held-out galaxies (``--calibration``): embedded with the same model, not the
    reference's galaxies, not the galaxies being predicted."""

    path: Path
    manifest: dict[str, Any]
    labels: np.ndarray            # (N, P) in the reference's property order


def open_calibration(path: str | Path, ref: Reference, query_manifest: dict[str, Any]
                     ) -> CalibrationCatalog:
    """Open and check a ``--calibration`` catalog (refusals name the file and the field)."""
    from galclip.search.catalog import read_catalog_table

    path = Path(path)
    manifest = check_query(path, ref)
    if _same_source(manifest, ref.manifest):
        raise PredictError(f"--calibration {path}: these are the reference's own galaxies (its "
                           f"held-out ones calibrate already; its training ones are the "
                           f"neighbour pool)")
    if _same_source(manifest, query_manifest):
        raise PredictError(f"--calibration {path}: these are the galaxies being predicted; "
                           f"calibrating on them voids the coverage guarantee")
    missing = [p for p in ref.properties if p not in manifest["columns"]]
    if missing:
        raise PredictError(f"--calibration {path}: no label column(s) {missing} (the reference's "
                           f"properties {ref.properties} are needed)")
    t = read_catalog_table(path, ref.properties)
    labels = np.stack([t.column(p).to_numpy(zero_copy_only=False).astype(np.float64)
                       for p in ref.properties], 1)
    return CalibrationCatalog(path, manifest, labels)


def resolve_grid(ref: Reference, k: int) -> Reference:
    """``ref`` with a redshift grid fine enough for its neighbours (:meth:`Grid.resolving`:
    three bins across the median kernel bandwidth, 300-4000 bins), judged on the neighbours of
    at most :data:`GRID_SAMPLE` of its held-out galaxies (a seeded sample): a spectrum's
    neighbours can agree on the redshift to well under the 300-bin grid's 0.0045."""
    cal = np.flatnonzero(~ref.pool)
    if ref.z_col is None or len(cal) == 0:
        return ref
    if len(cal) > GRID_SAMPLE:
        cal = np.sort(np.random.default_rng(0).choice(cal, GRID_SAMPLE, replace=False))
    found = neighbours(ref, _vectors(ref.path, ref.manifest, list(ref.searchers), cal), k, None)
    return replace(ref, grid=resolving_grid(ref.labels, ref.z_col, *found))


def resolving_grid(labels: np.ndarray, z_col: int, rows: np.ndarray, w: np.ndarray,
                   dist: np.ndarray) -> Grid:
    """:meth:`Grid.resolving` over the reference ``labels`` (N, P) for sample galaxies whose
    neighbours are ``rows``, ``w``, ``dist`` (n, k), with the robust spread :func:`estimate`
    gives their densities (half the raw 16-84 % range)."""
    est = estimate(labels, rows, w, dist, z_col, None)
    z = np.where(rows >= 0, labels[np.maximum(rows, 0), z_col], np.nan)
    robust = (est.raw[:, 0, 1, z_col] - est.raw[:, 0, 0, z_col]) / 2
    return Grid.resolving(labels[:, z_col], z, w, robust)


def fit_calibration(ref: Reference, k: int, chunk_rows: int = CHUNK_ROWS, workers: int = 1,
                    extra: Sequence[CalibrationCatalog] = ()) -> Calibration:
    """Predict the reference's held-out galaxies from the pool, ``chunk_rows`` at a time on
    ``workers`` threads (only their raw intervals and PIT values are kept), and the galaxies
    of the ``extra`` calibration catalogs likewise, and fit the conformal step on all of them."""
    cal_rows = np.flatnonzero(~ref.pool)
    if len(cal_rows) == 0 and not extra:
        raise PredictError(f"{ref.path}: no held-out (non-train) galaxy to calibrate on")

    def one(part: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        vec = _vectors(ref.path, ref.manifest, list(ref.searchers), part)
        return _raw_and_pit(ref, vec, k, ref.labels[part])

    parts = (cal_rows[lo:lo + chunk_rows] for lo in range(0, len(cal_rows), chunk_rows))
    found = list(ordered_map(one, parts, workers))
    truths = [ref.labels[cal_rows]]
    for c in extra:
        got, truth = _calibration_estimates(ref, c, k, chunk_rows, workers)
        found += got
        truths.append(truth)
    raws, pits = zip(*found, strict=True)
    return calibrate(np.concatenate(raws), np.concatenate(truths),
                     None if ref.z_col is None else np.concatenate(pits), ref.properties,
                     ref.floor)


def _raw_and_pit(ref: Reference, vectors: dict[str, np.ndarray], k: int, truth: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw intervals and raw redshift PIT values of calibration galaxies with known labels."""
    est = estimate(ref.labels, *neighbours(ref, vectors, k, None), ref.z_col, ref.grid)
    return est.raw, None if ref.z_col is None else pit_of(est, ref.grid, truth[:, ref.z_col])


def _calibration_estimates(ref: Reference, cat: CalibrationCatalog, k: int, chunk_rows: int,
                           workers: int) -> tuple[list, np.ndarray]:
    """The raw intervals and PIT values of a calibration catalog's galaxies that have every
    modality the prediction searches (chunk by chunk), and their labels."""
    chunks, start = [], 0
    for _, vec in iter_query(cat.path, cat.manifest, list(ref.searchers), chunk_rows):
        n = len(next(iter(vec.values())))
        ok = np.logical_and.reduce([np.isfinite(v).all(1) for v in vec.values()])
        chunks.append(({m: v[ok] for m, v in vec.items()}, cat.labels[start:start + n][ok]))
        start += n
    got = list(ordered_map(lambda c: _raw_and_pit(ref, c[0], k, c[1]), chunks, workers))
    return got, np.concatenate([t for _, t in chunks]) if chunks else np.empty((0, len(ref.properties)))


# ----------------------------------------------------------------------------- output rows
def chunk_columns(ref: Reference, cal: Calibration, est: Estimates) -> dict[str, np.ndarray]:
    """Output columns (without object_id) of one chunk's estimates."""
    iv = cal.intervals.apply(est.raw)                          # (n, L, 2, P)
    cols: dict[str, np.ndarray] = {"n_neighbours": est.n_used.astype(np.int32),
                                   "neighbour_distance": est.distance.astype(np.float32)}
    for j, p in enumerate(ref.properties):
        cols[p] = est.point[:, j].astype(np.float32)
        names = iter(interval_columns(p))
        for i in range(len(LEVELS)):
            for side in range(2):
                cols[next(names)] = iv[:, i, side, j].astype(np.float32)
    if est.calibrated_pdf is not None:
        cols["redshift_pdf"] = est.calibrated_pdf
    elif est.pdf is not None and cal.pit is not None:
        cols["redshift_pdf"] = cal.pit.apply(est.pdf, ref.grid).astype(np.float32)
    return cols


def ood_columns(ref: Reference, vectors: dict[str, np.ndarray], self_rows: np.ndarray | None,
                spectra: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """``ood_score`` (n,) in [0, 1] and ``unfamiliar`` (n,) bool of one chunk against the
    reference (:func:`galclip.search.ood.ood_scores`), the larger of the modalities; NaN / False
    where the galaxy has no embedding to score. ``spectra`` ((n, 7781) flux, ivar) adds the
    redshift check to the spectrum's score."""
    from galclip.search.ood import ood_scores

    def one(m: str, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arrays = None if spectra is None or m != "spectrum" else tuple(a[ok] for a in spectra)
        r = ood_scores(ref.catalog, m, vectors[m][ok],
                       self_rows=None if self_rows is None else self_rows[ok], spectra=arrays)
        return r["ood_score"], r["unfamiliar"]

    return larger_of_modalities(vectors, one)


def to_arrow(object_id: np.ndarray, cols: dict[str, np.ndarray]):
    import pyarrow as pa

    arrays = {"object_id": pa.array(object_id.astype(np.int64))}
    for c, v in cols.items():
        if v.ndim == 2:
            arrays[c] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        else:
            arrays[c] = pa.array(v)
    return pa.table(arrays)


# ----------------------------------------------------------------------------- the query
def _same_galaxies(query: dict, ref: Reference) -> bool:
    """True when the query catalog holds the reference's own galaxies (same catalog, or one
    embedded from the same dataset): only then is a galaxy left out of its own neighbours."""
    return _same_source(query, ref.manifest)


def _same_source(a: dict, b: dict) -> bool:
    """True when two catalog manifests are the same catalog or embed the same dataset."""
    from galclip.search.catalog import catalog_fingerprint

    if catalog_fingerprint(a) == catalog_fingerprint(b):
        return True
    da, db = (a.get("dataset") or {}), (b.get("dataset") or {})
    return bool(da.get("shards_sha256")) and da.get("shards_sha256") == db.get("shards_sha256")


def _self_rows(ref: Reference, object_id: np.ndarray) -> np.ndarray:
    order = np.argsort(ref.object_id, kind="stable")
    i = np.clip(np.searchsorted(ref.object_id[order], object_id), 0, len(order) - 1)
    hit = ref.object_id[order[i]] == object_id
    return np.where(hit, order[i], -1)


def iter_query(path: Path, manifest: dict, modalities: Sequence[str], chunk_rows: int
               ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(object_id (n,), {modality: vectors (n, E), NaN where absent}) per chunk of rows."""
    import pyarrow as pa

    from galclip import storage
    from galclip.data.dataset import column_to_numpy
    from galclip.search.catalog import embedding_column

    cols = ["object_id"] + [embedding_column(m) for m in modalities]
    pending, held = [], 0
    tables = storage.iter_row_groups(path, manifest["shards"], cols)
    for t in itertools.chain(tables, [None]):     # lazily: one chunk of row groups at a time
        if t is not None:
            pending.append(t)
            held += t.num_rows
        if pending and (held >= chunk_rows or t is None):
            merged = pa.concat_tables(pending)
            yield (merged.column(0).to_numpy(),
                   {m: column_to_numpy(merged.column(c), manifest["columns"][c]["shape"])
                    for m, c in zip(modalities, cols[1:], strict=True)})
            pending, held = [], 0


def check_query(path: Path, ref: Reference) -> dict[str, Any]:
    """The query catalog's manifest, refused when another model embedded it or it lacks a
    modality the prediction needs."""
    from galclip.search.catalog import CatalogError, read_catalog_manifest

    try:
        manifest = read_catalog_manifest(path)
    except CatalogError as e:
        raise PredictError(str(e)) from None
    mine, theirs = manifest["model"].get("sha256"), ref.manifest["model"].get("sha256")
    if mine != theirs:
        raise PredictError(f"{ref.path / 'manifest.json'}: field 'model.sha256' is "
                           f"{str(theirs)[:12]}..., but {path} was embedded with "
                           f"{str(mine)[:12]}...: the reference must be embedded with the same "
                           f"model as the catalog")
    lacking = [m for m in ref.searchers if m not in manifest["modalities"]]
    if lacking:
        raise PredictError(f"{path}: the catalog has no {lacking} embeddings to predict from")
    return manifest


def predict_chunk(ref: Reference, cal: Calibration, k: int, ids: np.ndarray,
                  vectors: dict[str, np.ndarray], *, same: bool, spectra=None):
    """The output table (Arrow) of one chunk of query galaxies; ``spectra``
    (:class:`galclip.search.ood.DatasetSpectra` of the query catalog) adds the redshift check
    to the OOD columns."""
    own = _self_rows(ref, ids) if same else None
    if spectra is None:
        (rows, w, dist), ood = neighbours_and_ood(ref, vectors, k, own)
    else:  # the redshift check scores the chunk itself: no distance-only score to discard
        rows, w, dist = neighbours(ref, vectors, k, own)
        ood = ood_columns(ref, vectors, own, spectra.read(ids))
    cols = chunk_columns(ref, cal, estimate(ref.labels, rows, w, dist, ref.z_col, ref.grid,
                                            cal.pit))
    return to_arrow(ids, {**cols, **ood})


def redshift_check_spectra(ref: Reference, catalog: Path, qman: dict):
    """The query catalog's spectra for the redshift check (PredictError where it cannot run)."""
    from galclip.search.ood import DatasetSpectra, load_reference

    if "spectrum" not in ref.searchers:
        raise PredictError("the redshift check needs spectra: use --from spectrum or both")
    if load_reference(ref.catalog, "spectrum", check=True).check is None:
        raise PredictError(f"{ref.path}: the reference has no redshift check (it needs "
                           f"galclip[sim], redshifts and its dataset: see docs/search.md)")
    try:
        return DatasetSpectra(qman, catalog)
    except ValueError as e:
        raise PredictError(str(e)) from e


def default_workers() -> int:
    """One worker thread per core this process may use."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _faiss_one_thread() -> None:
    """Worker-thread initialiser: FAISS searches on this thread use one OpenMP thread (the
    workers are the parallelism; OpenMP's per-thread setting, so the caller's is untouched)."""
    import faiss

    faiss.omp_set_num_threads(1)


def ordered_map(fn, items, workers: int) -> Iterator:
    """``map(fn, items)`` on ``workers`` threads, results in input order, at most ``workers + 1``
    items in flight (memory stays bounded by the chunk). FAISS, NumPy's sorts and ufuncs, the
    FFTs and Arrow release the GIL, so the threads share the cores."""
    if workers <= 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, initializer=_faiss_one_thread) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@dataclass
class Prediction:
    """What ``predict`` wrote (or returns): the metadata (that of the file, plus ``n_rows`` and
    ``seconds``) and, without ``out``, the table."""

    metadata: dict[str, Any]
    table: Any = None
    path: Path | None = None


def predict(catalog: str | Path, reference: str | Path, out: str | Path | None = None, *,
            from_: str = "spectrum", properties: Sequence[str] | None = None, k: int = K,
            chunk_rows: int = CHUNK_ROWS, pdf_bins: int | None = None, progress: bool = False,
            workers: int | None = None, command: str = "galclip.predict",
            redshift_check: bool = False, calibration: Sequence[str | Path] = ()) -> Prediction:
    """Predict every galaxy of ``catalog`` from the labelled ``reference`` (see the module
    docstring). With ``out`` (.parquet, .csv or .ecsv) the rows are written chunk by chunk and
    the result holds only the metadata; without it the whole table is returned. ``workers``
    threads (default: one per usable core) predict chunks concurrently; the rows come out in
    catalog order and are the same for any number of workers. ``redshift_check`` reads each
    galaxy's spectrum from the catalog's dataset and adds the OOD score's redshift check
    (:mod:`galclip.search.ood`; ~50 ms a galaxy). ``calibration``: labelled catalogs of
    galaxies from the same population, outside the neighbour pool, that calibrate beside the
    reference's held-out galaxies (more calibration galaxies, less scatter of the coverage)."""
    from galclip.search.index import blas_threads
    from galclip.search.results import check_format

    if out is not None:
        check_format(out)
    if k < 1:
        raise PredictError(f"--k must be >= 1, got {k}")
    with blas_threads(1):      # the worker threads are the parallelism; BLAS's threads would only
        # spin on ListScan's small products and the quantizer's (measured: 5-30x their CPU)
        ref = open_reference(reference, from_, properties, pdf_bins)
        if pdf_bins is None:
            ref = resolve_grid(ref, k)
        catalog = Path(catalog)
        qman = check_query(catalog, ref)
        t0 = time.perf_counter()
        workers = default_workers() if workers is None else workers
        extra = [open_calibration(c, ref, qman) for c in calibration]
        cal = fit_calibration(ref, k, chunk_rows, workers, extra)
        meta = _metadata(ref, cal, catalog, qman, from_, k, _same_galaxies(qman, ref), command,
                         extra)
        parts, path, n = _predict_rows(ref, cal, catalog, qman, k, out, meta, chunk_rows,
                                       workers, progress, redshift_check)
    meta = {**meta, "n_rows": n, "seconds": round(time.perf_counter() - t0, 3)}
    if path is not None:
        return Prediction(meta, None, path)
    import pyarrow as pa

    table = pa.concat_tables(parts) if parts else None
    if table is not None:
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)})
    return Prediction(meta, table, None)


def _predict_rows(ref: Reference, cal: Calibration, catalog: Path, qman: dict, k: int,
                  out: str | Path | None, meta: dict[str, Any], chunk_rows: int, workers: int,
                  progress: bool, redshift_check: bool):
    """Predict the query chunk by chunk on the worker threads: (tables kept, the file written,
    rows predicted) — with ``out`` the tables are written as they come and none is kept,
    without it no file is written."""
    from galclip.search.ood import load_reference as load_ood_reference
    from galclip.search.results import TableWriter

    writer = TableWriter(out, METADATA_KEY, meta, dense=True) if out is not None else None
    for m in ref.searchers:                  # the OOD references, before the worker threads
        load_ood_reference(ref.catalog, m)
    spectra = redshift_check_spectra(ref, catalog, qman) if redshift_check else None
    same = meta["catalog"]["same_galaxies_as_reference"]
    parts, n = [], 0

    def one(chunk: tuple[np.ndarray, dict[str, np.ndarray]]):
        return predict_chunk(ref, cal, k, *chunk, same=same, spectra=spectra)

    for table in ordered_map(one, iter_query(catalog, qman, list(ref.searchers), chunk_rows),
                             workers):
        writer.write(table) if writer else parts.append(table)
        n += table.num_rows
        if progress:
            print(f"\rpredicted {n}/{qman['n_rows']} galaxies", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    return parts, writer.close() if writer else None, n


def _metadata(ref: Reference, cal: Calibration, catalog: Path, qman: dict, from_: str, k: int,
              same: bool, command: str, extra: Sequence[CalibrationCatalog] = ()
              ) -> dict[str, Any]:
    from galclip.search.catalog import catalog_fingerprint

    where = "the reference's held-out (non-train) galaxies" + (
        f" and {len(extra)} calibration catalog(s)" if extra else "")

    return {
        "model_sha256": ref.manifest["model"].get("sha256"),
        "reference": {"path": str(ref.path.resolve()), "fingerprint": ref.fingerprint,
                      "n_rows": int(len(ref.labels)), "n_pool": int(ref.pool.sum()),
                      "n_calibration": int((~ref.pool).sum())},
        "catalog": {"path": str(catalog.resolve()), "fingerprint": catalog_fingerprint(qman),
                    "n_rows": int(qman["n_rows"]), "same_galaxies_as_reference": same},
        "from": from_, "k": k, "properties": ref.properties, "levels": list(LEVELS),
        "point_estimate": "inverse-distance weighted mean of the k neighbours' labels",
        "intervals": f"split-conformal CQR-r on {where}",
        "calibration": cal.summary,
        "calibration_catalogs": [{"path": str(c.path.resolve()),
                                  "fingerprint": catalog_fingerprint(c.manifest),
                                  "n_rows": int(c.manifest["n_rows"])} for c in extra],
        "redshift_pdf_grid": ref.grid.to_dict() if ref.grid is not None and cal.pit else None,
        "command": command,
    }


def read_prediction_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata ``predict`` stored in a Parquet or ECSV output."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY.encode())
        if raw is None:
            raise PredictError(f"{path}: no '{METADATA_KEY}' metadata: not a galclip prediction")
        return json.loads(raw)
    from astropy.table import Table

    meta = Table.read(path, format="ascii.ecsv").meta.get(METADATA_KEY)
    if meta is None:
        raise PredictError(f"{path}: no '{METADATA_KEY}' metadata: not a galclip prediction")
    return meta
