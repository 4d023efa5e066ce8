"""How much redshift does a spectrum lose when its ivar has to be estimated?

Simulated val-split spectra (whose true ivar is known) are read by a catalog's model (redshift =
median of the k nearest catalog spectra, own row left out) with (a) the simulator's ivar, (b)
the plain running-median DER_SNR estimate (``data.noise.estimate_ivar`` by arm), (c) the
readers' estimate, shaped by DESI's noise model at the sky lines (``estimate_grid_ivar``),
(d) a constant ivar (the spectrum's median). Printed: the share within 0.01 (1 + z), overall
and above z 0.4.

Usage: python benchmarks/explore/estimated_ivar_reading.py --catalog CAT --data DATA [--n 200]
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from galclip.data import open_dataset
    from galclip.data.noise import DESI_SEGMENTS, estimate_grid_ivar, estimate_ivar
    from galclip.data.splits import split_indices
    from galclip.search.api import Catalog

    cat = Catalog(args.catalog)
    ds = open_dataset(args.data)
    val = split_indices(ds.read_columns(["object_id"])["object_id"], "val")[: args.n]

    def read(f, iv, own) -> float:
        res = cat.search(spectrum=(np.asarray(f, np.float32), np.asarray(iv, np.float32)),
                         k=args.k + 1)
        return float(np.median([n["redshift"] for n in res.neighbours
                                if n["object_id"] != own][: args.k]))

    ivars = {"simulator's ivar": lambda f, iv, g: iv,
             "plain estimate": lambda f, iv, g: estimate_ivar(f, g, starts=DESI_SEGMENTS),
             "estimate with sky-line shape": lambda f, iv, g: estimate_grid_ivar(f, g),
             "constant ivar": lambda f, iv, g: np.where(g, np.median(iv[g]), 0.0)}
    ok, zs = {k: [] for k in ivars}, []
    for i in val:
        r = ds[int(i)]
        f, iv, z = r["spectrum_flux"].astype(np.float64), r["spectrum_ivar"], float(r["redshift"])
        for name, fn in ivars.items():
            ok[name].append(abs(read(f, fn(f, iv, iv > 0), r["object_id"]) - z) / (1 + z) < 0.01)
        zs.append(z)
    hi = np.array(zs) > 0.4
    print(f"{len(val)} simulated val spectra ({hi.sum()} above z 0.4), z = median of {args.k} "
          f"nearest, catalog {args.catalog}")
    print("| ivar | within 0.01(1+z) | above z 0.4 |\n|---|---|---|")
    for name, v in ok.items():
        v = np.array(v)
        print(f"| {name} | {v.mean():.1%} | {v[hi].mean():.1%} |")


if __name__ == "__main__":
    main()
