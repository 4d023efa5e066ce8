"""The photometry baselines of ``galclip evaluate`` alone, on one or more simulated datasets.

Runs ``galclip.eval.evaluate.run_photometry`` (the photometry MLP and k-NN on g, r, z asinh
magnitudes, the same code, splits and config as ``galclip evaluate``; no model is needed) on
each ``--data`` folder and prints the test-split R² of every property, beside the image and
spectrum zero-shot rows of an existing ``metrics.json`` (``--metrics``). With ``--noise`` it
also prints, per band and r-magnitude bin, the median relative error 1/(F sqrt(flux_ivar)) and
the pull (flux - flux_true) sqrt(flux_ivar) of datasets that have them. ``--floors`` adds
extra relative errors to the measured fluxes first (a sensitivity probe; ``add_floor``).

    python benchmarks/explore/photometry_baselines.py --config /work/runs-demo3/report/config.yaml \
        --metrics /work/runs-demo3/report/metrics.json --data /work/runs-demo3/data /tmp/new --noise
"""
from __future__ import annotations

import argparse

import numpy as np

BANDS = ("g", "r", "z")
MAG_BINS = (14.0, 17.0, 18.0, 19.0, 19.5, 20.0, 20.5, 21.5)


def add_floor(labels: dict, floor: float, seed: int = 0) -> None:
    """Sensitivity probe, not a model of anything: widen the measured fluxes by an extra
    Gaussian error of ``floor`` x the true flux (a stand-in for the errors the simulated
    catalogue leaves out: model mismatch, deblending, calibration)."""
    rng = np.random.default_rng(seed)
    for b in BANDS:
        true = labels[f"flux_{b}_true"]
        labels[f"flux_{b}"] = labels[f"flux_{b}"] + floor * true * rng.normal(size=len(true))


def photometry_rows(data: str, config: str, floor: float = 0.0) -> list[dict]:
    """The photometry baselines' result rows of ``galclip evaluate`` on ``data``."""
    import torch

    from galclip.data import open_dataset
    from galclip.eval.evaluate import MORPH_PREFIX, Context, _subset, load_split_rows, run_photometry
    from galclip.eval.schema import evaluation_config

    cfg = evaluation_config(config)
    torch.manual_seed(cfg.seed)
    ds = open_dataset(data)
    rows = load_split_rows(ds, cfg)
    if floor:
        add_floor(rows["labels"], floor)
    lab_tr, lab_te = _subset(rows["labels"], rows["train"]), _subset(rows["labels"], rows["test"])
    props = [p for p in cfg.properties if p in rows["labels"]]
    morph = sorted(c for c in rows["labels"] if c.startswith(MORPH_PREFIX))
    ctx = Context(cfg, ds, "cpu", rows["train"], rows["test"], lab_tr, lab_te, props, morph, {}, {})
    results, _, _ = run_photometry(ctx)
    print(f"{data}: train {len(rows['train'])}, test {len(rows['test'])}, floor {floor}")
    return results


def _line(name: str, row: dict, props: list[str]) -> str:
    return f"| {name} | " + " | ".join(f"{row['properties'][p]['r2']:.3f}" for p in props) + " |"


def noise_summary(data: str) -> None:
    """Median relative flux error and pull statistics per band and r-magnitude bin."""
    from galclip.data import open_dataset

    ds = open_dataset(data)
    cols = ["mag_r"] + [f"{k}_{b}" for b in BANDS for k in ("flux", "flux_ivar")] + \
        [f"flux_{b}_true" for b in BANDS]
    if any(c not in ds.columns for c in cols):
        print(f"{data}: no measured photometry columns")
        return
    t = ds.read_columns(cols)
    print(f"\n{data}: median relative error 1/(F_true sqrt(ivar)) [pull mean, std] per r bin")
    print("| r bin | n | " + " | ".join(BANDS) + " |\n|---|---|---|---|---|")
    for lo, hi in zip(MAG_BINS[:-1], MAG_BINS[1:], strict=True):
        s = (t["mag_r"] >= lo) & (t["mag_r"] < hi)
        cells = []
        for b in BANDS:
            sig = t[f"flux_ivar_{b}"][s] ** -0.5
            pull = (t[f"flux_{b}"][s] - t[f"flux_{b}_true"][s]) / sig
            rel = np.median(sig / t[f"flux_{b}_true"][s]) if s.any() else np.nan
            cells.append(f"{rel:.4f} [{pull.mean():+.2f}, {pull.std():.2f}]" if s.any() else "—")
        print(f"| {lo}–{hi} | {int(s.sum())} | " + " | ".join(cells) + " |")
    pulls = np.concatenate([(t[f"flux_{b}"] - t[f"flux_{b}_true"]) * np.sqrt(t[f"flux_ivar_{b}"])
                            for b in BANDS])
    print(f"all pulls: n {len(pulls)}, mean {pulls.mean():+.3f}, std {pulls.std():.3f}, "
          f"|pull| > 3: {np.mean(np.abs(pulls) > 3):.4f} (Gaussian 0.0027)")


def main() -> None:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--config", default="cpu", help="eval preset or YAML (the report's config.yaml)")
    ap.add_argument("--metrics", help="a metrics.json whose zero-shot rows are printed beside")
    ap.add_argument("--noise", action="store_true")
    ap.add_argument("--floors", default="0", help="comma-separated extra relative errors "
                    "(sensitivity probe, add_floor; needs flux_{b}_true)")
    args = ap.parse_args()
    table = []
    for data in args.data:
        for floor in (float(f) for f in args.floors.split(",")):
            for r in photometry_rows(data, args.config, floor):
                tag = f", +{floor:g} floor" if floor else ""
                table.append((f"{r['source']} {r['model']} ({data}{tag})", r))
    props = list(table[0][1]["properties"])
    if args.metrics:
        for r in json.loads(open(args.metrics).read())["results"]:
            galclip_zero_shot = r["type"] == "zero-shot" and r["id"].startswith("zero-shot:galclip")
            if r["source"] in ("Image", "Spectrum") and (galclip_zero_shot or r["type"] == "supervised"):
                table.append((f"{r['source']} {r['model']} ({args.metrics})", r))
    print("\n| test-split R² | " + " | ".join(props) + " |\n|---|" + "---|" * len(props))
    for name, r in table:
        print(_line(name, r, props))
    if args.noise:
        for data in args.data:
            noise_summary(data)


if __name__ == "__main__":
    main()
