"""Are ``galclip predict``'s intervals and densities calibrated on galaxies nothing trained on?

Predicts a catalog of new galaxies (a simulation with another seed, embedded with the same
model) from a labelled reference (the demo's catalog), from spectra and from images, and scores
the predictions against the new galaxies' true labels: coverage of the 68 % and 95 % intervals
(redshift and log M*) with their sampling noise, redshift PIT KS distance and CRPS, and σ_NMAD, η
and bias of the point estimate beside ``galclip evaluate``'s zero-shot k-NN figures of the same
model (its ``metrics.json``, on its own test split) and beside evaluate's estimator run on the
*same* new galaxies (``galclip.eval.knn.KNNRegressor``: standardized embeddings, Euclidean,
k = 64 of the reference's training split), so the point estimates are compared galaxy for
galaxy. Several ``--catalog`` (simulations with different seeds) are scored as one set.

    .venv/bin/galclip simulate --n 1000 --seed 7 --out runs/sim-seed7
    .venv/bin/galclip embed --model runs/demo/align/model.safetensors --data runs/sim-seed7 \\
        --out runs/sim-seed7/catalog
    .venv/bin/python benchmarks/predict_quality.py --catalog runs/sim-seed7/catalog \\
        --reference runs/demo/catalog --evaluate runs/demo/report/metrics.json

Coverage noise: over n query galaxies a coverage c has binomial standard error
sqrt(c (1 - c) / n); the calibration set of n_cal held-out reference galaxies adds its own,
about sqrt(c (1 - c) / n_cal) (the conformal quantile's coverage is Beta-distributed given the
calibration set), so a measured coverage within ~2 of their combined errors of nominal is what a
calibrated method shows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PROPERTIES = ("redshift", "log_mstar")


def truth(catalog: Path, columns) -> dict[str, np.ndarray]:
    """The catalog's ids and true ``columns`` (and its stored ``split`` where it has one)."""
    from galclip.search.catalog import read_catalog_manifest, read_catalog_table

    stored = ["split"] if "split" in read_catalog_manifest(catalog)["columns"] else []
    t = read_catalog_table(catalog, ["object_id", *columns, *stored])
    return {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}


def score(table, meta: dict, true: dict) -> dict:
    from galclip.eval import conformal as cf
    from galclip.eval import metrics as M
    from galclip.eval.predict import interval_columns

    assert (table.column("object_id").to_numpy() == true["object_id"]).all()
    out = {}
    for p in PROPERTIES:
        t = np.asarray(true[p], float)
        lo68, hi68, lo95, hi95 = (table.column(c).to_numpy() for c in interval_columns(p))
        ok = np.isfinite(t) & np.isfinite(lo95)
        out[p] = {"coverage_68": float(np.mean(((lo68 <= t) & (t <= hi68))[ok])),
                  "coverage_95": float(np.mean(((lo95 <= t) & (t <= hi95))[ok])),
                  "r2": M.r2_score(t, table.column(p).to_numpy())}
    z = np.asarray(true["redshift"], float)
    grid = cf.Grid(**{k: v for k, v in meta["redshift_pdf_grid"].items() if k != "centres"})
    pdf = np.stack(table.column("redshift_pdf").to_numpy(zero_copy_only=False)).astype(float)
    pit = cf.cdf_at(pdf, grid, z)
    zp = table.column("redshift").to_numpy()
    out["redshift"].update(pit_ks=cf.pit_ks(pit), crps=float(np.mean(cf.crps(pdf, grid, z))),
                           **{k: v for k, v in M.redshift_metrics(z, zp).items()
                              if k in ("sigma_nmad", "bias", "eta_0.15", "eta_0.05")})
    return out


def evaluate_estimator(reference: Path, catalogs: list[Path], src: str, k: int) -> np.ndarray:
    """Redshifts of the query galaxies by ``galclip evaluate``'s zero-shot k-NN (fit on the
    reference's training split): the point estimate evaluate scores, on the same galaxies."""
    from galclip.data.splits import split_indices
    from galclip.eval.knn import KNNRegressor
    from galclip.search.catalog import read_catalog_table, read_embeddings

    ref = read_catalog_table(reference, ["object_id", "split", "redshift"])
    ids = ref.column("object_id").to_numpy()
    split = ref.column("split").to_pylist() if "split" in ref.column_names else None
    train = np.zeros(len(ids), bool)
    train[split_indices(ids, "train", stored=split)] = True
    x, rows = read_embeddings(reference, src)
    keep = train[rows]
    z = ref.column("redshift").to_numpy()[rows[keep]].astype(float)
    reg = KNNRegressor(k=k).fit(x[keep], z)
    out = []
    for c in catalogs:
        q, qrows = read_embeddings(c, src)
        pred = np.full(read_catalog_table(c, ["object_id"]).num_rows, np.nan)
        pred[qrows] = reg.predict(q)
        out.append(pred)
    return np.concatenate(out)


def paired_outliers(z: np.ndarray, z_predict: np.ndarray, z_evaluate: np.ndarray,
                    cut: float = 0.15) -> dict:
    """Galaxies that are η outliers (|Δz|/(1+z) > cut) of one estimator and not the other, and
    McNemar's exact two-sided p of that split (binomial, p = 1/2): is one point estimate worse
    than the other on the same galaxies, or is the difference of η noise?"""
    from scipy.stats import binomtest

    ok = np.isfinite(z) & np.isfinite(z_predict) & np.isfinite(z_evaluate)
    a = np.abs(z_predict[ok] - z[ok]) / (1 + z[ok]) > cut
    b = np.abs(z_evaluate[ok] - z[ok]) / (1 + z[ok]) > cut
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"predict_only": only_a, "evaluate_only": only_b, "both": int((a & b).sum()),
            "mcnemar_p": float(p)}


def evaluate_rows(path: Path | None) -> dict:
    """evaluate's zero-shot galclip k-NN redshift metrics per source (Image, Spectrum)."""
    if path is None or not path.exists():
        return {}
    m = json.loads(path.read_text())
    return {r["source"].lower(): r["properties"].get("redshift", {}) for r in m["results"]
            if r["type"] == "zero-shot" and r["model"] == "galclip k-NN"
            and r["source"] in ("Image", "Spectrum")}


def predict_all(catalogs: list[Path], reference: Path, src: str, k: int,
                calibration: list[Path] = (), pdf_bins: int | None = None):
    """predict each catalog from the reference; one table (rows in catalog order) and the
    metadata of the last (the calibration depends on the reference only)."""
    import pyarrow as pa

    from galclip.eval.predict import predict

    extra = {"pdf_bins": pdf_bins} if pdf_bins else {}
    runs = [predict(c, reference, from_=src, properties=list(PROPERTIES), k=k,
                    calibration=calibration, **extra) for c in catalogs]
    return pa.concat_tables([r.table for r in runs]), runs[-1].metadata


def coverage_noise(scores: dict, n: int, n_cal: dict) -> str:
    """The coverages with their combined sampling error (query set and calibration set)."""
    parts = []
    for p in PROPERTIES:
        for lvl in (68, 95):
            c = scores[p][f"coverage_{lvl}"]
            se = np.sqrt(c * (1 - c) / n + c * (1 - c) / n_cal[p])
            parts.append(f"{p} {lvl}: {c:.3f} ± {se:.3f} ({(c - lvl / 100) / se:+.1f} σ)")
    return "; ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalog", required=True, action="append",
                   help="catalog of new galaxies (with true labels); repeat to pool several")
    p.add_argument("--reference", required=True)
    p.add_argument("--evaluate", default=None, help="metrics.json of galclip evaluate")
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--calibration", action="append", default=[],
                   help="extra calibration catalog (galclip predict --calibration); repeatable")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--pdf-bins", type=int, default=None,
                   help="redshift grid bins (galclip predict --pdf-bins; default predict's)")
    p.add_argument("--split", default=None, choices=("train", "val", "test"),
                   help="score only the catalog's galaxies of this split (with --catalog = "
                        "--reference and --split test: the galaxies evaluate scores)")
    args = p.parse_args()
    from galclip.eval import metrics as M

    catalogs = [Path(c) for c in args.catalog]
    parts = [truth(c, PROPERTIES) for c in catalogs]
    true = {c: np.concatenate([t[c] for t in parts]) for c in parts[0] if all(c in t for t in parts)}
    keep = None
    if args.split:
        from galclip.data.splits import split_indices

        offsets = np.cumsum([0] + [len(t["object_id"]) for t in parts])
        keep = np.sort(np.concatenate([o + split_indices(t["object_id"], args.split,
                                                         stored=t.get("split"))
                                       for o, t in zip(offsets, parts, strict=False)]))
        true = {c: v[keep] for c, v in true.items()}
    ev = evaluate_rows(Path(args.evaluate) if args.evaluate else None)
    res = {}
    for src in ("spectrum", "image"):
        table, meta = predict_all(catalogs, Path(args.reference), src, args.k,
                                  [Path(c) for c in args.calibration], args.pdf_bins)
        table = table if keep is None else table.take(keep)
        zev = evaluate_estimator(Path(args.reference), catalogs, src, args.k)
        zev = zev if keep is None else zev[keep]
        ok = np.isfinite(zev)
        same = M.redshift_metrics(true["redshift"][ok].astype(float), zev[ok])
        same["paired_outliers_0.15"] = paired_outliers(true["redshift"].astype(float),
                                                       table.column("redshift").to_numpy(), zev)
        res[src] = {"scores": score(table, meta, true), "calibration": meta["calibration"],
                    "n": table.num_rows, "evaluate": ev.get(src, {}),
                    "pdf_grid": {k: meta["redshift_pdf_grid"][k] for k in ("step", "n")},
                    "evaluate_estimator_same_galaxies": same}
    print(f"{sum(len(t['object_id']) for t in parts)} galaxies from {len(catalogs)} catalog(s)"
          f"{'' if keep is None else f', {len(keep)} of split {args.split}'}")
    print("| from | z cov 68 / 95 | log M* cov 68 / 95 | z PIT KS | z CRPS | σ_NMAD (evaluate's "
          "estimator, same galaxies; evaluate's test split) | η0.15 (same; test split) | η0.05 "
          "(same) | bias |")
    print("|---|---|---|---|---|---|---|---|---|")
    for src, r in res.items():
        z, m, e = r["scores"]["redshift"], r["scores"]["log_mstar"], r["evaluate"]
        s = r["evaluate_estimator_same_galaxies"]
        print(f"| {src} | {z['coverage_68']:.3f} / {z['coverage_95']:.3f} | "
              f"{m['coverage_68']:.3f} / {m['coverage_95']:.3f} | {z['pit_ks']:.3f} | "
              f"{z['crps']:.4f} | {z['sigma_nmad']:.4f} ({s['sigma_nmad']:.4f}; "
              f"{e.get('sigma_nmad', float('nan')):.4f}) | "
              f"{z['eta_0.15']:.4f} ({s['eta_0.15']:.4f}; {e.get('eta_0.15', float('nan')):.3f}) | "
              f"{z['eta_0.05']:.3f} ({s['eta_0.05']:.3f}) | {z['bias']:+.4f} |")
    for src, r in res.items():
        po = r["evaluate_estimator_same_galaxies"]["paired_outliers_0.15"]
        print(f"{src}: η0.15 outliers of predict only {po['predict_only']}, of evaluate's estimator "
              f"only {po['evaluate_only']}, both {po['both']} (McNemar p = {po['mcnemar_p']:.2f})")
    for src, r in res.items():
        n_cal = r["calibration"]["n_calibration"]
        print(f"{src}: n = {r['n']}, n_cal = {n_cal}: {coverage_noise(r['scores'], r['n'], n_cal)}; "
              f"redshift grid {r['pdf_grid']['n']} bins of {r['pdf_grid']['step']:.5f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
