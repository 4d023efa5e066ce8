"""Throughput and peak memory of ``galclip build-dataset`` on synthetic MMU-format inputs.

Writes N Legacy Survey cutouts (MMU HDF5, 4 x 160 x 160) and N DESI spectra (MMU HDF5) at
matching positions, builds a dataset with position cross-matching, and prints objects per
second and the peak resident memory of the build. Each size runs in a fresh process so the
peaks are comparable: a streaming build keeps the peak flat as N grows.

    .venv/bin/python benchmarks/build_dataset.py --sizes 500 2000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_inputs(root: Path, n: int, chunk: int = 250) -> None:
    import h5py

    from galclip import conventions as C

    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(150, 152, n), rng.uniform(1, 3, n)
    with h5py.File(root / "ls.hdf5", "w") as f:
        f["object_id"] = np.array([f"b-{i}".encode() for i in range(n)])
        f["ra"], f["dec"] = ra, dec
        f.create_dataset("image_array", (n, 4, 160, 160), np.float32)
        f.create_dataset("image_ivar", (n, 4, 160, 160), np.float32)
        f["image_band"] = np.array([[b"des-g", b"des-r", b"des-i", b"des-z"]] * n)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            f["image_array"][s:s + m] = rng.normal(size=(m, 4, 160, 160)).astype(np.float32)
            f["image_ivar"][s:s + m] = np.ones((m, 4, 160, 160), np.float32)
    with h5py.File(root / "desi.hdf5", "w") as f:
        f["object_id"] = np.arange(n, dtype=np.int64) + 10**15
        f["ra"], f["dec"], f["Z"] = ra + 0.3 / 3600, dec, rng.uniform(0, 0.5, n)
        f.create_dataset("spectrum_flux", (n, C.N_WAVE), np.float32)
        f["spectrum_ivar"] = np.ones((n, C.N_WAVE), np.float32)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            f["spectrum_flux"][s:s + m] = rng.normal(size=(m, C.N_WAVE)).astype(np.float32)


def run_one(n: int) -> dict:
    from galclip.data.build import BuildConfig, build_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_inputs(root, n)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        report = build_dataset(BuildConfig(out=str(root / "out"), images=[str(root / "ls.hdf5")],
                                           spectra=[str(root / "desi.hdf5")],
                                           progress=False))["report"]
        dt = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = sum(p.stat().st_size for p in (root / "ls.hdf5", root / "desi.hdf5"))
    return {"n": n, "rows": report.rows_written, "seconds": round(dt, 1),
            "objects_per_s": round(n / dt, 1), "input_mb": round(size / 2**20),
            "peak_rss_mb": round(peak / 1024), "rss_before_build_mb": round(base / 1024)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"N={r['n']}: {r['rows']} rows in {r['seconds']} s ({r['objects_per_s']} obj/s), "
              f"inputs {r['input_mb']} MB, peak RSS {r['peak_rss_mb']} MB "
              f"(before build {r['rss_before_build_mb']} MB)")


if __name__ == "__main__":
    main()
