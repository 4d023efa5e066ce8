"""Find the nearest neighbours of a galaxy, cutout or spectrum in an embedding catalog.

In-modality (image->image, spectrum->spectrum) or across modalities with --to. A query file is
embedded with the catalog's own model. --where keeps only rows matching metadata clauses and
still returns k results.

Examples:
  galclip search catalogs/sim --id 39627 --k 10
  galclip search catalogs/sim --id 39627 --to spectrum --where "redshift > 0.3"
  galclip search catalogs/sim --image cutout.fits --to spectrum --json
"""
from __future__ import annotations

import argparse

from galclip.argtypes import check_columns, int_range


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", type=int, help="object_id of a catalog galaxy")
    q.add_argument("--image", help="FITS cutout (3, H, W) g,r,z nanomaggies, H, W >= 152")
    q.add_argument("--spectrum", help="FITS spectrum (DESI coadd, wavelength/flux/ivar table, "
                                      "or 7781-pixel flux array)")
    p.add_argument("--from", dest="from_", choices=["image", "spectrum"], default=None,
                   help="with --id: which embedding of the object to search with (default image)")
    p.add_argument("--to", choices=["image", "spectrum"], default=None,
                   help="modality to search in (default: the query's)")
    p.add_argument("--k", type=int_range(1, 10_000), default=10)
    p.add_argument("--where", default=None, help='metadata filter, e.g. "redshift > 0.3 and log_mstar > 10"')
    p.add_argument("--include-self", action="store_true",
                   help="with --id in its own modality: keep the object itself in the results")
    p.add_argument("--columns", default="object_id,ra,dec,redshift",
                   help="columns of the table output")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from galclip.search.api import Catalog

    cat = Catalog(args.catalog)
    check_columns(args.columns, list(cat.meta))
    if args.id is not None:
        try:
            cat.row_of(args.id)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
    res = cat.search(id=args.id, image=args.image, spectrum=args.spectrum, from_=args.from_,
                     to=args.to, k=args.k, where=args.where,
                     exclude_self=False if args.include_self else None)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
    else:
        q = res.query
        what = q.get("id", q.get("file"))
        print(f"# {q['from']} -> {q['to']} neighbours of {what}"
              + (f" where {q['where']}" if q["where"] else ""))
        print(res.to_text([c for c in args.columns.split(",") if c]))
    return 0
