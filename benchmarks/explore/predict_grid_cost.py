"""What the resolving redshift grid costs galclip predict: the same prediction with a fixed
300-bin grid and with the default (Grid.resolving), wall time and the density column's size.

    python benchmarks/explore/predict_grid_cost.py --catalog runs/demo/catalog --reference runs/demo/catalog
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--catalog", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--from", dest="from_", default="spectrum")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()
    from galclip.eval.predict import predict

    for bins in (300, None):
        t0 = time.perf_counter()
        res = predict(args.catalog, args.reference, from_=args.from_, properties=["redshift"],
                      pdf_bins=bins, workers=args.workers)
        dt = time.perf_counter() - t0
        pdf = res.table.column("redshift_pdf")
        n_bins = res.metadata["redshift_pdf_grid"]["n"]
        print(f"pdf_bins={bins or 'auto'}: {n_bins} bins, {res.table.num_rows} galaxies in {dt:.1f} s "
              f"({res.table.num_rows / dt:.0f} /s; calibration and grid included), density column "
              f"{pdf.nbytes / res.table.num_rows / 1e3:.1f} kB per galaxy in memory, "
              f"mean {np.mean([len(x) for x in pdf.to_pylist()[:10]]):.0f} values")


if __name__ == "__main__":
    main()
