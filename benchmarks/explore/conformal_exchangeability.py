"""Is ``galclip predict``'s interval coverage on new galaxies off because of the calibration
set's size (sampling noise) or because its galaxies are not like the new ones (a systematic)?

For one modality, the CQR-r conformity scores (``galclip.eval.conformal.cqr_scores``) of the
reference's held-out calibration galaxies and of new galaxies (catalogs with true labels, e.g.
simulations with other seeds embedded with the same model) are compared:

- a two-sample KS test of the scores per level and property (exchangeable sets: p uniform);
- the coverage on the new galaxies of the factor fitted on the reference's calibration set,
  beside its spread over bootstrap resamples of that set (the calibration-set noise) and beside
  the coverage of a factor fitted on half of the new galaxies, tested on the other half.

    python benchmarks/explore/conformal_exchangeability.py --reference runs/demo/catalog \\
        --catalog runs/sim-seed7/catalog --catalog runs/sim-seed8/catalog --from image
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PROPERTIES = ["redshift", "log_mstar"]


def raw_of(ref, vectors: dict, k: int) -> np.ndarray:
    from galclip.eval.predict import estimate, neighbours

    est = estimate(ref.labels, *neighbours(ref, vectors, k, None), None, None)
    return est.raw                                           # (n, L, 2, P)


def query_raw(ref, catalog: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    from galclip.search.catalog import read_catalog_table, read_embeddings

    m = next(iter(ref.searchers))
    x, rows = read_embeddings(catalog, m)
    t = read_catalog_table(catalog, PROPERTIES)
    truth = np.stack([t.column(p).to_numpy().astype(float) for p in PROPERTIES], 1)[rows]
    raws = [raw_of(ref, {m: x[i:i + 4096]}, k) for i in range(0, len(x), 4096)]
    return np.concatenate(raws), truth


def covered(iv, raw: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(L, P) fraction of truths inside the calibrated intervals."""
    cal = iv.apply(raw)
    inside = (cal[:, :, 0] <= truth[:, None]) & (truth[:, None] <= cal[:, :, 1])
    ok = np.isfinite(truth)[:, None] & np.isfinite(cal[:, :, 0])
    return (inside & ok).sum(0) / ok.sum(0)


def main() -> None:
    from scipy.stats import ks_2samp

    from galclip.eval import conformal as cf
    from galclip.eval.predict import open_reference

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True)
    p.add_argument("--catalog", required=True, action="append")
    p.add_argument("--from", dest="from_", default="image", choices=("image", "spectrum"))
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--boot", type=int, default=400)
    args = p.parse_args()
    ref = open_reference(args.reference, args.from_, PROPERTIES)
    from galclip.eval.predict import _vectors

    cal_rows = np.flatnonzero(~ref.pool)
    craw = raw_of(ref, _vectors(ref.path, ref.manifest, list(ref.searchers), cal_rows), args.k)
    ctruth = ref.labels[cal_rows]
    parts = [query_raw(ref, Path(c), args.k) for c in args.catalog]
    qraw = np.concatenate([r for r, _ in parts])
    qtruth = np.concatenate([t for _, t in parts])
    iv = cf.IntervalCalibration.fit(craw, ctruth, ref.floor)
    floor = iv.floor
    cs, qs = cf.cqr_scores(craw, ctruth, floor), cf.cqr_scores(qraw, qtruth, floor)
    cov = covered(iv, qraw, qtruth)
    rng = np.random.default_rng(0)
    boot = np.array([covered(cf.IntervalCalibration.fit(craw[b], ctruth[b], ref.floor), qraw, qtruth)
                     for b in (rng.integers(0, len(craw), len(craw)) for _ in range(args.boot))])
    half = rng.permutation(len(qraw))
    a, b = half[: len(half) // 2], half[len(half) // 2:]
    own = covered(cf.IntervalCalibration.fit(qraw[a], qtruth[a], ref.floor), qraw[b], qtruth[b])
    print(f"from {args.from_}: {len(craw)} calibration galaxies (reference held-out), "
          f"{len(qraw)} new galaxies")
    print("| property | level | KS p (scores cal vs new) | coverage on new (reference's factor) "
          "| bootstrap 16–84 % / 2.5–97.5 % of that coverage | coverage, half of new calibrating the other |")
    print("|---|---|---|---|---|---|")
    for j, prop in enumerate(PROPERTIES):
        for i, lev in enumerate(cf.LEVELS):
            x, y = cs[:, i, j], qs[:, i, j]
            pks = ks_2samp(x[np.isfinite(x)], y[np.isfinite(y)]).pvalue
            lo1, hi1, lo2, hi2 = np.percentile(boot[:, i, j], [16, 84, 2.5, 97.5])
            print(f"| {prop} | {lev:.2f} | {pks:.3f} | {cov[i, j]:.3f} | {lo1:.3f}–{hi1:.3f} / "
                  f"{lo2:.3f}–{hi2:.3f} | {own[i, j]:.3f} |")


if __name__ == "__main__":
    main()
