"""The zero-shot k-NN rows of ``galclip evaluate`` with k chosen on the validation split, on a
finished run, without rerunning the rest of the evaluation (probes, baselines, report).

Reads the run's evaluation config (``REPORT/config.yaml``; fields it predates take their
defaults, so ``knn.k_grid`` is the default grid unless overridden), the dataset and the
catalog's stored vectors exactly as evaluate does (:func:`galclip.eval.evaluate.prepare`), then
computes the k = 64 rows (:func:`galclip.eval.tasks.knn_results`, checked against the run's
``metrics.json``) and the k-from-val rows (:func:`galclip.eval.tasks.knn_val_results`) for the
galclip zero-shot sources and the photometry k-NN. Prints a Markdown table.

    python benchmarks/explore/zeroshot_k_from_val.py --run /work/runs-demo3 [knn.k_grid=[8,16]]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def _rows(ctx):
    from galclip.eval.baselines import PHOTOMETRY_COLUMNS, photometry_features
    from galclip.eval.tasks import knn_results, knn_val_results

    k, grid, sel = ctx.cfg.knn.k, ctx.cfg.knn.k_grid, ctx.cfg.knn.select_split
    args = (ctx.properties,)
    fixed, _ = knn_results(ctx.emb_train, ctx.y_train, ctx.emb_test, ctx.y_test, *args, k=k)
    chosen, _ = knn_val_results(ctx.emb_train, ctx.y_train, ctx.emb_val, ctx.y_val, ctx.emb_test,
                                ctx.y_test, *args, grid, split=sel)
    if all(c in ctx.labels_train for c in PHOTOMETRY_COLUMNS):
        phot = {s: {"photometry": photometry_features(lab)} for s, lab in (
            ("train", ctx.labels_train), ("val", ctx.labels_val), ("test", ctx.labels_test))}
        src = (("photometry", "photometry", "photometry"),)
        fixed += knn_results(phot["train"], ctx.y_train, phot["test"], ctx.y_test, *args, k=k,
                             model="k-NN", sources=src, type_="supervised")[0]
        chosen += knn_val_results(phot["train"], ctx.y_train, phot["val"], ctx.y_val, phot["test"],
                                  ctx.y_test, *args, grid, model="k-NN (k from val)", sources=src,
                                  type_="supervised", split=sel)[0]
    return fixed, chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a demo folder (data/, align/, catalog/, report/)")
    ap.add_argument("overrides", nargs="*", help="evaluation config overrides (key=value)")
    args = ap.parse_args()
    from galclip.eval.evaluate import prepare
    from galclip.eval.schema import evaluation_config

    run = Path(args.run)
    cfg = evaluation_config(run / "report" / "config.yaml", args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        ctx, *_ = prepare(run / "align" / "model.safetensors", run / "data", Path(tmp), cfg,
                          catalog=run / "catalog")
    fixed, chosen = _rows(ctx)
    stored = {r["id"]: r for r in json.loads((run / "report" / "metrics.json").read_text())["results"]}
    print(f"train pool {len(ctx.train_idx)}, {cfg.knn.select_split} {len(ctx.y_val)}, "
          f"test {len(ctx.test_idx)}; grid {cfg.knn.k_grid}")
    print(f"| source | property | R² k={cfg.knn.k} | metrics.json | k from val | val R² at it "
          f"| test R² at it | σ_NMAD k={cfg.knn.k} → k from val |")
    print("|---|---|---|---|---|---|---|---|")
    for f, c in zip(fixed, chosen, strict=True):
        for p in ctx.properties:
            a, b, k = f["properties"][p], c["properties"][p], c["k"][p]
            m = stored.get(f["id"], {}).get("properties", {}).get(p, {}).get("r2")
            nmad = (f" {a['sigma_nmad']:.4f} → {b['sigma_nmad']:.4f}" if p == "redshift" else "")
            print(f"| {f['source']} | {p} | {a['r2']:.4f} | {'—' if m is None else f'{m:.4f}'} | "
                  f"{k} | {c['k_selection']['val_r2'][p][str(k)]:.4f} | {b['r2']:.4f} |{nmad} |")


if __name__ == "__main__":
    main()
