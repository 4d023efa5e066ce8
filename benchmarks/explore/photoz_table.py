"""The photo-z calibration table ``galclip evaluate`` adds, computed from a catalog's stored
vectors (train split = neighbours + calibration, test split = scored), without the rest of the
evaluation: the numbers of the report's "Zero-shot redshift densities and intervals" table.

    .venv/bin/python benchmarks/explore/photoz_table.py runs/demo/catalog
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    from galclip.data.dataset import column_to_numpy
    from galclip.data.splits import split_indices
    from galclip.eval.baselines import PHOTOMETRY_COLUMNS, photometry_features
    from galclip.eval.photoz import photoz_results, table
    from galclip.search.catalog import read_catalog_manifest, read_catalog_table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("catalog")
    p.add_argument("--k", type=int, default=64)
    args = p.parse_args()
    manifest = read_catalog_manifest(args.catalog)
    t = read_catalog_table(args.catalog)
    cols = {c: column_to_numpy(t.column(c), manifest["columns"][c]["shape"]) for c in t.column_names}
    both = np.isfinite(cols["image_embedding"]).all(1) & np.isfinite(cols["spectrum_embedding"]).all(1)
    split = {s: np.intersect1d(split_indices(cols["object_id"], s), np.flatnonzero(both))
             for s in ("train", "test")}
    feats = {s: {m: cols[f"{m}_embedding"][r] for m in ("image", "spectrum")} for s, r in split.items()}
    if all(c in cols for c in PHOTOMETRY_COLUMNS):
        for s, r in split.items():
            feats[s]["photometry"] = photometry_features({c: cols[c][r] for c in PHOTOMETRY_COLUMNS})
    res = photoz_results(feats["train"], cols["redshift"][split["train"]], feats["test"],
                         cols["redshift"][split["test"]], k=args.k)
    head, rows = table(res)
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(json.dumps({s: {k: v for k, v in r.items() if k != "pit_histogram"} for s, r in res.items()}))


if __name__ == "__main__":
    main()
