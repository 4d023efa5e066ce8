"""Find the nearest neighbours of a galaxy, cutout or spectrum in an embedding catalog, or list
the catalog's objects around a sky position.

In-modality (image->image, spectrum->spectrum) or across modalities with --to. A query file is
embedded with the catalog's own model; a DESI coadd/spectra file holding several fibres needs
--targetid or --row. --where keeps only rows matching metadata clauses and still returns k
results. The query's redshift and the neighbours' redshift spread are printed with the table;
--out writes the table as .csv, .parquet or .ecsv. Every query gets an out-of-distribution
score (query.ood_score in --json: the share of the catalog's held-out galaxies whose 10th
neighbour is nearer) and is flagged unfamiliar (query.unfamiliar) beyond what 99 % of them reach;
a spectrum given as a file also has its neighbours' redshift checked against a template fit
(query.ood_check "distance+redshift", query.neighbour_z, query.template_z), united with the
distance so that still 1 % of held-out galaxies are flagged.

Examples (against the catalog `make demo` writes):
  galclip search runs/demo/catalog --id 3 --k 10
  galclip search runs/demo/catalog --id 3 --to spectrum --where "redshift > 0.1"
  galclip search runs/demo/catalog --ra 180 --dec 0 --radius 72000
  galclip search runs/demo/catalog --id 3 --out neighbours.csv
  galclip search runs/demo/catalog --spectrum ../shared/data/real/desi/coadd-sv3-dark-26065.fits \
      --targetid 39627866878511337 --to image
  galclip search runs/demo/catalog --spectrum \
      ../shared/data/real/desi-andes/coadd-bgs-66003-20200315.fits --targetid 35191325330507548 --json

A spectrum file without inverse variance (like the last, a DESI flux table) is read with a noise
estimated from its flux; the output says so (query.ivar_estimated).
"""
from __future__ import annotations

import argparse
import sys

from galclip.argtypes import check_columns, int_range
from galclip.modalities import NAMES
from galclip.search.api import CONE_RADIUS_ARCSEC, K
from galclip.search.catalog import BASE_COLUMNS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="catalog folder (from galclip embed)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--id", type=int, help="object_id of a catalog galaxy")
    q.add_argument("--image", help="FITS cutout (3, H, W) g,r,z nanomaggies, H, W >= 152")
    q.add_argument("--spectrum", help="FITS spectrum (DESI coadd/spectra file, wavelength/flux/"
                                      "ivar table, or 7781-pixel flux array)")
    q.add_argument("--ra", type=float, help="cone search: right ascension in degrees (with --dec)")
    p.add_argument("--dec", type=float, help="cone search: declination in degrees")
    p.add_argument("--radius", type=float, default=CONE_RADIUS_ARCSEC,
                   help="cone search radius in arcsec (default %(default)s)")
    fibre = p.add_mutually_exclusive_group()
    fibre.add_argument("--targetid", type=int,
                       help="with --spectrum: the TARGETID of the fibre to use (DESI files)")
    fibre.add_argument("--row", type=int, help="with --spectrum: the row of the fibre to use")
    p.add_argument("--from", dest="from_", choices=NAMES, default=None,
                   help="with --id: which embedding of the object to search with (default image)")
    p.add_argument("--to", choices=NAMES, default=None,
                   help="modality to search in (default: the query's)")
    p.add_argument("--k", type=int_range(1, 10_000), default=None,
                   help=f"number of results (default {K}; a cone search lists all by default)")
    p.add_argument("--where", default=None, help='metadata filter, e.g. "redshift > 0.3 and log_mstar > 10"')
    p.add_argument("--include-self", action="store_true",
                   help="with --id in its own modality: keep the object itself in the results")
    p.add_argument("--columns", default=",".join(BASE_COLUMNS),
                   help="columns of the table output (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", default=None, help="also write the table to this .csv, .parquet or .ecsv")


def _check(args: argparse.Namespace) -> None:
    if (args.ra is None) != (args.dec is None):
        raise ValueError("a cone search needs both --ra and --dec (degrees)")
    if (args.targetid is not None or args.row is not None) and args.spectrum is None:
        raise ValueError("--targetid/--row pick a fibre of the --spectrum file; give --spectrum")


def _search(cat, args: argparse.Namespace):
    if args.ra is not None:
        return cat.cone(args.ra, args.dec, args.radius, k=args.k, where=args.where)
    if args.id is not None:
        try:
            cat.row_of(args.id)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
    return cat.search(id=args.id, image=args.image, spectrum=args.spectrum, from_=args.from_,
                      to=args.to, k=K if args.k is None else args.k, where=args.where,
                      targetid=args.targetid, row=args.row,
                      exclude_self=False if args.include_self else None)


def _header(q: dict) -> str:
    if "cone" in q:
        c = q["cone"]
        head = f"# objects within {c['radius_arcsec']:g} arcsec of RA {c['ra']:.6f}, Dec {c['dec']:.6f}"
    else:
        what = q.get("id", q.get("file"))
        pick = "".join(f" {k} {q[k]}" for k in ("targetid", "row") if k in q)
        head = f"# {q['from']} -> {q['to']} neighbours of {what}{pick}"
    return head + (f" where {q['where']}" if q["where"] else "")


def run(args: argparse.Namespace) -> int:
    import json

    from galclip.search.api import Catalog
    from galclip.search.results import summary_line

    _check(args)
    cat = Catalog(args.catalog)
    check_columns(args.columns, list(cat.meta))
    res = _search(cat, args)
    if args.out:
        print(f"wrote {len(res.neighbours)} rows to {res.write(args.out)}", file=sys.stderr)
    if not res.neighbours:
        print(f"galclip search: no results: {_empty_reason(res.query)}", file=sys.stderr)
    if res.query.get("ivar_estimated"):
        print("galclip search: the spectrum file has no inverse variance; its noise was estimated "
              "from the flux (query.ivar_estimated; see docs/search.md)", file=sys.stderr)
    if args.json:
        print(json.dumps(res.to_dict(), indent=1))
        return 0
    print(_header(res.query))
    if "cone" not in res.query:
        print(_familiarity(res.query))
        print(summary_line(res.redshift))
    if res.neighbours:
        print(res.to_text([c for c in args.columns.split(",") if c]))
    return 0


def _familiarity(q: dict) -> str:
    if q.get("ood_score") is None:
        return "# familiarity: not calibrated (the catalog has no held-out rows for it)"
    verdict = ("UNFAMILIAR: unlike the catalog's galaxies, neighbours' labels are not to be "
               "trusted" if q["unfamiliar"] else "familiar")
    check = ""
    if q.get("ood_check") == "distance+redshift" and q.get("neighbour_z") is not None:
        check = (f"; redshift check: neighbours z {q['neighbour_z']:.4f}, template fit z "
                 f"{q['template_z']:.4f}, tension {q['z_tension']:.2f}")
    return (f"# OOD score {q['ood_score']:.3f} (k={q['ood_k']} neighbour at cosine distance "
            f"{q['ood_distance']:.4f}{check}): {verdict}")


def _empty_reason(q: dict) -> str:
    if "cone" in q:
        return "no catalog object lies within the cone" + (" and matches the filter"
                                                           if q["where"] else "")
    if q["where"]:
        return f"the filter {q['where']!r} matches no object with a {q['to']} embedding"
    return f"the catalog has no other object with a {q['to']} embedding"
