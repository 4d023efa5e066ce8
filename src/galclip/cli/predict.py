"""Predict redshift and physical properties of every galaxy of an embedding catalog from a
labelled reference catalog, with calibrated 68 % and 95 % intervals and a redshift density.

k nearest neighbours in the reference (its FAISS index) in the --from space give the point
estimate (inverse-distance weighted mean); the intervals and the density are calibrated by
split conformal prediction on the reference's held-out (non-train) galaxies, which are kept out
of the neighbour pool. Both catalogs must be embedded with the same model. The output has one
row per galaxy: object_id, n_neighbours, neighbour_distance, {property},
{property}_lo68/_hi68/_lo95/_hi95, redshift_pdf, and ood_score / unfamiliar (a galaxy unlike
the reference's, flagged for 1 % of galaxies drawn like them; its estimate is not to be trusted)
(Parquet or ECSV; the grid and the provenance are in the file's metadata). --redshift-check
reads each galaxy's spectrum from the catalog's dataset and adds the OOD score's check of the
neighbours' redshift against a template fit (~50 ms a galaxy). See docs/predict.md.

Examples (against the catalog `make demo` writes):
  galclip predict runs/demo/catalog --reference runs/demo/catalog --out predictions.parquet
  galclip predict runs/demo/catalog --reference runs/demo/catalog --from image \
      --properties redshift,log_mstar --out predictions-image.ecsv
"""
from __future__ import annotations

import argparse

from galclip.argtypes import int_range


def add_arguments(p: argparse.ArgumentParser) -> None:
    from galclip.eval.predict import CHUNK_ROWS, FROM, K

    p.add_argument("catalog", help="catalog folder of the galaxies to predict (galclip embed)")
    p.add_argument("--reference", required=True,
                   help="labelled catalog folder embedded with the same model (its FAISS index "
                        "is used when saved)")
    p.add_argument("--out", required=True, help="output table: .parquet, .ecsv or .csv "
                                                "(CSV leaves out the redshift_pdf list column)")
    p.add_argument("--from", dest="from_", choices=FROM, default="spectrum",
                   help="embedding space of the neighbours (default %(default)s; both = an "
                        "equal mixture of the image and spectrum neighbours)")
    p.add_argument("--properties", default=None,
                   help="comma-separated label columns of the reference (default: all its "
                        "numeric labels)")
    p.add_argument("--k", type=int_range(1, 4096), default=K,
                   help="neighbours per galaxy and modality (default %(default)s)")
    p.add_argument("--chunk-rows", type=int_range(1), default=CHUNK_ROWS,
                   help="galaxies predicted at a time: bounds memory (default %(default)s)")
    p.add_argument("--workers", type=int_range(1), default=None,
                   help="threads predicting chunks at once (default: one per usable core; the "
                        "output is the same for any number)")
    p.add_argument("--pdf-bins", type=int_range(8, 100_000), default=None,
                   help="bins of the redshift density grid (default: as many as resolve the "
                        "reference's neighbours, three across their median kernel bandwidth, "
                        "300-4000)")
    p.add_argument("--redshift-check", action="store_true",
                   help="flag a spectrum also when its neighbours' redshift disagrees with a "
                        "template fit of the spectrum, read from the catalog's dataset (the "
                        "OOD score of a spectrum search; ~50 ms a galaxy; see docs/search.md)")
    p.add_argument("--calibration", action="append", default=[], metavar="CATALOG",
                   help="a labelled catalog of other galaxies of the same population, embedded "
                        "with the same model and not in the reference, that calibrates the "
                        "intervals beside the reference's held-out galaxies (repeatable; more "
                        "calibration galaxies, less scatter of the coverage)")


def run(args: argparse.Namespace) -> int:
    import sys

    from galclip.eval.predict import predict

    props = [c for c in args.properties.split(",") if c] if args.properties else None
    res = predict(args.catalog, args.reference, args.out, from_=args.from_, properties=props,
                  k=args.k, chunk_rows=args.chunk_rows, pdf_bins=args.pdf_bins, progress=True,
                  workers=args.workers, redshift_check=args.redshift_check,
                  calibration=args.calibration,
                  command="galclip predict " + " ".join(sys.argv[2:]))
    meta = res.metadata
    print(f"wrote {meta['n_rows']} predictions to {res.path} in {meta['seconds']:.1f} s "
          f"({meta['n_rows'] / max(meta['seconds'], 1e-9):,.0f} galaxies/s)")
    cal = meta["calibration"]
    n_extra = sum(c["n_rows"] for c in meta["calibration_catalogs"])
    extra = f" and {n_extra} of {len(meta['calibration_catalogs'])} calibration catalog(s)" \
        if n_extra else ""
    print(f"calibrated on {meta['reference']['n_calibration']} held-out reference galaxies"
          f"{extra}; raw neighbour-interval coverage -> conformal factor:")
    for p in meta["properties"]:
        raw, q = cal["raw_coverage"][p], cal["interval_factor"][p]
        print(f"  {p:<22} 68 %: {raw['68']:.3f} -> {q['68']:+.2f}   95 %: {raw['95']:.3f} -> "
              f"{q['95']:+.2f}")
    if "redshift_pdf" in cal:
        print(f"  redshift density: raw PIT KS {cal['redshift_pdf']['raw_pit_ks']:.3f} before "
              f"recalibration")
    return 0
