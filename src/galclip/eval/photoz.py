"""The zero-shot redshift rows of the evaluation in the language of photometric redshifts.

For each zero-shot redshift source (image and spectrum embeddings; catalogue photometry as the
baseline) the same calibrated k-NN predictor as ``galclip predict`` (``galclip.eval.predict``,
``galclip.eval.conformal``) is fitted on the evaluation's training split, of which a fixed
``CALIBRATION_FRACTION`` is held out of the neighbour pool to calibrate the intervals and the
density (split conformal), and scored on the evaluation split: the PIT histogram and its KS
distance from uniform, the empirical coverage of the 68 % and 95 % intervals, the mean CRPS
(Hersbach 2000), and σ_NMAD, bias and outlier fractions η (|Δz|/(1+z) > 0.15 and > 0.05) of
the point estimate (``galclip.eval.metrics``). Embeddings are searched by cosine (unit vectors,
as the catalog's FAISS index), photometry by Euclidean distance of standardized asinh
magnitudes.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from galclip.eval import conformal as cf
from galclip.eval import metrics as M

CALIBRATION_FRACTION = 0.2
PIT_BINS = 20


def _searcher(x: np.ndarray, pool: np.ndarray, l2: bool):
    import faiss

    from galclip.eval.predict import Searcher

    x = np.ascontiguousarray(x, np.float32)
    index = faiss.IndexFlatL2(x.shape[1]) if l2 else faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return Searcher(index, np.arange(len(x)), pool, l2=l2)


def _prepare(train_x: np.ndarray, test_x: np.ndarray, l2: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (cosine) or standardized features (Euclidean), by the training rows."""
    if l2:
        mean, std = train_x.mean(0), train_x.std(0)
        std = np.where(std > 0, std, 1.0)
        return (train_x - mean) / std, (test_x - mean) / std
    unit = [x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) for x in (train_x, test_x)]
    return unit[0], unit[1]


def calibrated_redshifts(train_x: np.ndarray, z_train: np.ndarray, test_x: np.ndarray,
                         k: int = 64, l2: bool = False, seed: int = 0,
                         pdf_bins: int | None = None) -> dict[str, np.ndarray]:
    """Point estimates (n,), calibrated intervals (n, L, 2) and densities (n, G) with the grid
    (``pdf_bins`` bins, or as many as resolve the calibration galaxies' neighbours: galclip
    predict's rule, :func:`galclip.eval.predict.resolving_grid`)."""
    from galclip.eval.predict import combine, estimate, resolving_grid

    ok = np.isfinite(train_x).all(1) & np.isfinite(z_train)
    train_x, z = train_x[ok], np.asarray(z_train, float)[ok]
    tr, te = _prepare(train_x, test_x, l2)
    cal = np.random.default_rng(seed).random(len(tr)) < CALIBRATION_FRACTION
    searcher = _searcher(tr, ~cal, l2)
    labels = z[:, None]
    floor = np.array([1e-3 * np.std(z)])

    def found(x):
        return combine([searcher.search(np.ascontiguousarray(x, np.float32), k)])

    nb_cal = found(tr[cal])
    grid = cf.Grid.covering(z, pdf_bins) if pdf_bins else resolving_grid(labels, 0, *nb_cal)

    def raw(nb):
        return estimate(labels, *nb, 0, grid)

    from galclip.eval.predict import calibrate, pit_of

    est_cal = raw(nb_cal)
    calib = calibrate(est_cal.raw, labels[cal], pit_of(est_cal, grid, z[cal]), ["redshift"], floor)
    est = raw(found(te))
    return {"point": est.point[:, 0], "intervals": calib.intervals.apply(est.raw)[:, :, :, 0],
            "pdf": calib.pit.apply(est.pdf, grid), "grid": grid}


def score(pred: Mapping, z_true: np.ndarray) -> dict:
    """PIT, coverage, CRPS and the photo-z point metrics of one source on the evaluation split."""
    z_true = np.asarray(z_true, float)
    ok = np.isfinite(z_true) & np.isfinite(pred["pdf"]).all(1)
    pit = cf.cdf_at(pred["pdf"][ok], pred["grid"], z_true[ok])
    cov = cf.coverage(pred["intervals"][ok][:, :, :, None], z_true[ok][:, None])[:, 0]
    point = M.redshift_metrics(z_true, pred["point"])
    return {"pit_ks": cf.pit_ks(pit), "pit_histogram": cf.pit_histogram(pit, PIT_BINS),
            **{f"coverage_{round(lev * 100)}": float(c) for lev, c in zip(cf.LEVELS, cov,
                                                                           strict=True)},
            "crps": float(np.mean(cf.crps(pred["pdf"][ok], pred["grid"], z_true[ok]))),
            **{m: point[m] for m in ("sigma_nmad", "bias", "eta_0.15", "eta_0.05", "r2")},
            "n": int(ok.sum())}


def photoz_results(features_train: Mapping[str, np.ndarray], z_train: np.ndarray,
                   features_test: Mapping[str, np.ndarray], z_test: np.ndarray, k: int = 64,
                   seed: int = 0) -> dict[str, dict]:
    """{source: scores} for each source in ``features_*`` (``photometry`` is Euclidean)."""
    out = {}
    for source, x in features_train.items():
        if source not in features_test:
            continue
        pred = calibrated_redshifts(x, z_train, features_test[source], k,
                                    l2=(source == "photometry"), seed=seed)
        out[source] = score(pred, z_test)
    return out


def table(photoz: Mapping[str, Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the report's photo-z calibration table."""
    cols = ["pit_ks", "coverage_68", "coverage_95", "crps", "sigma_nmad", "bias", "eta_0.15",
            "eta_0.05", "n"]
    head = ["source", "PIT KS", "cover 68 %", "cover 95 %", "CRPS", "σ_NMAD", "bias", "η 0.15",
            "η 0.05", "n"]
    rows = [[s, *[f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols]]
            for s, r in photoz.items()]
    return head, rows
