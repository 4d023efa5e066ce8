"""Are ``galclip predict``'s intervals and densities calibrated on galaxies nothing trained on?

Predicts a catalog of new galaxies (a simulation with another seed, embedded with the same
model) from a labelled reference (the demo's catalog), from spectra and from images, and scores
the predictions against the new galaxies' true labels: coverage of the 68 % and 95 % intervals
(redshift and log M*), redshift PIT KS distance and CRPS, and σ_NMAD, η and bias of the point
estimate beside ``galclip evaluate``'s zero-shot k-NN figures of the same model (its
``metrics.json``).

    .venv/bin/galclip simulate --n 1000 --seed 7 --out runs/sim-seed7
    .venv/bin/galclip embed --model runs/demo/align/model.safetensors --data runs/sim-seed7 \\
        --out runs/sim-seed7/catalog
    .venv/bin/python benchmarks/predict_quality.py --catalog runs/sim-seed7/catalog \\
        --reference runs/demo/catalog --evaluate runs/demo/report/metrics.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PROPERTIES = ("redshift", "log_mstar")


def truth(catalog: Path, columns) -> dict[str, np.ndarray]:
    from galclip.search.catalog import read_catalog_table

    t = read_catalog_table(catalog, ["object_id", *columns])
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


def evaluate_rows(path: Path | None) -> dict:
    """evaluate's zero-shot galclip k-NN redshift metrics per source (Image, Spectrum)."""
    if path is None or not path.exists():
        return {}
    m = json.loads(path.read_text())
    return {r["source"].lower(): r["properties"].get("redshift", {}) for r in m["results"]
            if r["type"] == "zero-shot" and r["model"] == "galclip k-NN"
            and r["source"] in ("Image", "Spectrum")}


def main() -> None:
    from galclip.eval.predict import predict

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalog", required=True, help="catalog of new galaxies (with true labels)")
    p.add_argument("--reference", required=True)
    p.add_argument("--evaluate", default=None, help="metrics.json of galclip evaluate")
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    p.add_argument("--split", default=None, choices=("train", "val", "test"),
                   help="score only the catalog's galaxies of this split (with --catalog = "
                        "--reference and --split test: the galaxies evaluate scores)")
    args = p.parse_args()
    true = truth(Path(args.catalog), PROPERTIES)
    keep = None
    if args.split:
        from galclip.data.splits import split_indices

        keep = np.sort(split_indices(true["object_id"], args.split))
        true = {c: v[keep] for c, v in true.items()}
    ev = evaluate_rows(Path(args.evaluate) if args.evaluate else None)
    res = {}
    for src in ("spectrum", "image"):
        r = predict(args.catalog, args.reference, from_=src, properties=list(PROPERTIES), k=args.k)
        table = r.table if keep is None else r.table.take(keep)
        res[src] = {"scores": score(table, r.metadata, true), "calibration": r.metadata[
            "calibration"], "n": table.num_rows, "evaluate": ev.get(src, {})}
    print("| from | z cov 68 / 95 | log M* cov 68 / 95 | z PIT KS | z CRPS | σ_NMAD (evaluate) "
          "| η0.15 (evaluate) | η0.05 | bias |")
    print("|---|---|---|---|---|---|---|---|---|")
    for src, r in res.items():
        z, m, e = r["scores"]["redshift"], r["scores"]["log_mstar"], r["evaluate"]
        print(f"| {src} | {z['coverage_68']:.3f} / {z['coverage_95']:.3f} | "
              f"{m['coverage_68']:.3f} / {m['coverage_95']:.3f} | {z['pit_ks']:.3f} | "
              f"{z['crps']:.4f} | {z['sigma_nmad']:.4f} ({e.get('sigma_nmad', float('nan')):.4f}) | "
              f"{z['eta_0.15']:.3f} ({e.get('eta_0.15', float('nan')):.3f}) | "
              f"{z['eta_0.05']:.3f} | {z['bias']:+.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
