"""The simulated spectra's instrument effects against real DESI spectra, one statistic per effect.

Effective time, sky-limited noise per unit effective time against the sky flux, the residual
at the bright sky lines as a fraction of their flux, spectrum-minus-imaging colours (the
calibration error), spectrum r over total r (fibre loss and the point-source calibration), and
the masked fraction; simulated (a galclip dataset from ``galclip simulate``) beside the real
files in ../shared/data/real (pipeline coadds, Andes tables) and desispec's main-survey
reference tiles. The same table as ``galclip simulate --report``; the statistics are in
``galclip.sim.report_instrument``.

Usage:  python benchmarks/instrument_calibration.py SIMDATA [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a simulated galclip dataset (galclip simulate)")
    ap.add_argument("--json", help="also write the statistics here")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from galclip.data import open_dataset
    from galclip.sim import report_instrument as R

    ds = open_dataset(args.data)
    c = R.compare(R.read_sim(ds), REAL)
    print(f"{len(c['efftime']['sim'])} simulated spectra; real: {c['n_real']}")
    print("\n".join(R._table(c)))
    n = c["noise"]
    print("noise sigma^2 x efftime x psf^2 per sky-flux bin", R.SKY_BINS.tolist())
    print("  sim ", np.round(n["sim"], 1).tolist())
    print("  real", np.round(n["real"], 1).tolist())
    print("real coadds:", dict(zip(c["efftime"]["real_names"].tolist(),
                                   np.round(c["efftime"]["real_coadds"]).tolist(), strict=True)))
    print("real sky residual fractions:", np.round(c["sky_residual"]["real"], 4).tolist())
    if args.json:
        def plain(x):
            if isinstance(x, dict):
                return {k: plain(v) for k, v in x.items()}
            return np.asarray(x).tolist() if isinstance(x, np.ndarray) else x
        Path(args.json).write_text(json.dumps(plain(c), indent=1))


if __name__ == "__main__":
    main()
