"""What the OOD score costs (galclip.search.ood): building the held-out reference once, reading
it back, and scoring one query, on a synthetic catalog of clustered unit vectors.

Also checks the calibration on new draws from the catalog's own population (should be ~1 %).

Usage:  python benchmarks/ood_cost.py [--n 50000] [--dim 128]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def draw(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(32, dim))
    x = centres[rng.integers(0, 32, n)] + 0.7 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    from galclip.search.api import Catalog
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index
    from galclip.search.ood import load_reference, ood_scores, query_ood

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "catalog"
        rng = np.random.default_rng(0)
        meta = {"object_id": np.arange(args.n, dtype=np.int64), "ra": rng.uniform(0, 360, args.n),
                "dec": rng.uniform(-5, 5, args.n), "redshift": rng.uniform(0, 0.6, args.n)}
        write_catalog(out, meta, {"spectrum": draw(args.n, args.dim, 1)}, model_sha256="0" * 64)
        build_index(out, "spectrum", verbose=False)
        cat = Catalog(out)
        kind = cat.index("spectrum").kind
        t0 = time.perf_counter()
        ref = load_reference(cat, "spectrum")
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_reference(Catalog(out), "spectrum")
        t_read = time.perf_counter() - t0
        q = draw(200, args.dim, 2)
        query_ood(cat, "spectrum", q[0])
        t0 = time.perf_counter()
        for v in q[:100]:
            query_ood(cat, "spectrum", v)
        t_query = (time.perf_counter() - t0) / 100
        flagged = ood_scores(cat, "spectrum", draw(5000, args.dim, 3))["unfamiliar"].mean()
        size = (out / "ood-spectrum.json").stat().st_size
    print(f"catalog {args.n} x {args.dim} ({kind} index): reference of {len(ref.distances)} "
          f"held-out rows built in {t_build:.2f} s, stored {size / 1e3:.0f} kB, read back in "
          f"{t_read * 1e3:.1f} ms (new Catalog, index load included); one query's score "
          f"{t_query * 1e3:.2f} ms; new draws flagged {flagged:.2%}")


if __name__ == "__main__":
    main()
