"""Which unfamiliarity score flags the real spectra a simulation-trained model reads wrong?

The product's OOD flag (``galclip.search.ood``) is the cosine distance to the 10th nearest
simulated spectrum in the aligned embedding, flagged beyond the 99th percentile of held-out
simulated galaxies. Since the noise of the Andes tables was corrected, real spectra land *near*
the simulated manifold but still at the wrong redshift, so a distance says "familiar" while the
answer is wrong. This script scores several designs side by side on the same model, each
calibrated the same way (threshold = 99th percentile of the score on the catalog's test split,
so 1 % of those are flagged), and reports per design:

* the flag rate on the val split (held-out simulated galaxies that did not calibrate it),
* and on the real DESI spectra inside the simulated redshift range: flagged, wrong (the 16-NN
  median redshift outside 0.01 (1 + z)) and not flagged, right but flagged.

Designs (larger = less trustworthy):

  A  aligned k-NN distance   1 - cos to the 10th neighbour in the aligned spectrum embedding
                             (the product today);
  B  backbone k-NN distance  the same in the spectrum encoder's pooled features (pre-alignment);
  C  neighbour z spread      half the 16-84 % range of ln(1 + z) over the 16 neighbours: the
                             neighbours disagree on the redshift;
  D  template disagreement   |ln(1 + z_knn) - ln(1 + z_template)|, z_template the chi^2 fit of a
                             PCA basis of galclip's own SEDs (independent of the learned model);
  T  template tension        D / (C + SIGMA_FLOOR): the disagreement in units of the spread the
                             neighbours themselves show — a confident wrong answer scores high, a
                             wrong answer that already shows it is uncertain does not;
  E  template goodness       reduced chi^2 of the best template fit;
  A|T, A|D                   either: max of the two ranks among the calibration split,
                             calibrated as one score.

The template fit is the one of ``template_redshift.py`` (same SED templates and basis), done
for every trial redshift at once by FFT cross-correlation on a log-wavelength grid
(``galclip.search.redshift_templates.LogTemplateFit``), so a thousand held-out spectra take a minute.

Usage: python benchmarks/explore/ood_designs.py --catalog CATALOG --data SIMDATA
           [--basis /tmp/basis.npz] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sim_to_real import REAL, real_spectra  # noqa: E402

K_Z, K_OOD, FLAG, WITHIN = 16, 10, 0.01, 0.01
SIGMA_FLOOR = 0.002   # a neighbour set never claims a z spread finer than this (in ln(1 + z))
Z_MIN, Z_MAX = 0.003, 1.25


# ----------------------------------------------------------------------------- template fit
def load_fitter(path: Path, n_templates: int, k: int, seed: int):
    """galclip.search.redshift_templates.LogTemplateFit on the simulated SED basis, cached in ``path``."""
    from galclip.eval.template_fit import simulated_basis
    from galclip.search.redshift_templates import LogTemplateFit

    if not path.exists():
        lnw0, basis = simulated_basis(n_templates, k, seed)
        np.savez(path, lnw0=lnw0, basis=basis)
    z = np.load(path)
    return LogTemplateFit(float(z["lnw0"]), z["basis"], Z_MIN, Z_MAX)


def fit(fitter, flux: np.ndarray, ivar: np.ndarray) -> tuple[float, float]:
    """(best z, reduced chi^2 at it)."""
    chi = fitter.chi2(flux, ivar)
    j, n_good = int(np.argmin(chi)), int(((ivar > 0) & np.isfinite(flux)).sum())
    return float(fitter.z[j]), float(chi[j] / max(n_good - fitter.k, 1))


# ----------------------------------------------------------------------------- embeddings
def encode(model, flux: np.ndarray, ivar: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(aligned (N, E), backbone pooled (N, D)), both L2-normalised."""
    import torch

    al, po = [], []
    with torch.inference_mode():
        for i in range(0, len(flux), batch):
            out = model.spectrum_encoder(torch.as_tensor(flux[i:i + batch], dtype=torch.float32),
                                         torch.as_tensor(ivar[i:i + batch], dtype=torch.float32))
            al.append(model.project_spectrum(out).numpy())
            po.append(torch.nn.functional.normalize(out["pooled"], dim=-1).numpy())
    return np.concatenate(al), np.concatenate(po)


def neighbours(q: np.ndarray, pool: np.ndarray, self_rows: np.ndarray | None, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(cosines (N, k), pool rows (N, k)) of the k nearest, best first, own row left out."""
    cos = q @ pool.T                                                  # (N, P)
    if self_rows is not None:
        ok = self_rows >= 0
        cos[np.flatnonzero(ok), self_rows[ok]] = -np.inf
    top = np.argpartition(-cos, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(cos, top, 1), axis=1)
    top = np.take_along_axis(top, order, 1)
    return np.take_along_axis(cos, top, 1), top


# ----------------------------------------------------------------------------- scores
def scores(al, po, pool_al, pool_po, zpool, self_rows, fitter, flux, ivar) -> dict[str, np.ndarray]:
    """Every design's score (N,) and the k-NN redshift of N spectra."""
    cos_a, rows = neighbours(al, pool_al, self_rows, max(K_Z, K_OOD))
    cos_b, _ = neighbours(po, pool_po, self_rows, K_OOD)
    lz = np.log1p(zpool[rows[:, :K_Z]])                                # (N, 16)
    z_knn = np.expm1(np.median(lz, axis=1))
    spread = 0.5 * (np.quantile(lz, 0.84, axis=1) - np.quantile(lz, 0.16, axis=1))
    fits = np.array([fit(fitter, f, i) for f, i in zip(flux, ivar, strict=True)])   # (N, 2)
    diff = np.abs(np.log1p(z_knn) - np.log1p(fits[:, 0]))
    return {"z_knn": z_knn, "z_template": fits[:, 0],
            "A": 1 - cos_a[:, K_OOD - 1], "B": 1 - cos_b[:, K_OOD - 1], "C": spread,
            "D": diff, "T": diff / (spread + SIGMA_FLOOR), "E": fits[:, 1]}


DESIGNS = {"A": "aligned 10-NN distance (today)", "B": "backbone 10-NN distance",
           "C": "neighbour z spread", "D": "template disagreement |dz|",
           "T": "template tension |dz| / (spread + 0.002)", "E": "template reduced chi^2",
           "A|C": "A or C (max of their ranks)", "A|D": "A or D (max of their ranks)",
           "A|T": "A or T (max of their ranks): the product"}


def rank(cal: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Share of the calibration scores below each of ``x``."""
    return np.searchsorted(np.sort(cal), x, side="left") / len(cal)


def flags(cal: dict, other: dict) -> dict[str, np.ndarray]:
    """Each design's flag on ``other``, its threshold the 99th percentile on ``cal`` (the
    calibration split); a union "X|Y" scores max(rank X, rank Y), calibrated the same way, so
    it too flags 1 % of the calibration split."""
    out = {}
    for d in DESIGNS:
        parts = d.split("|")
        s_cal = np.max([rank(cal[p], cal[p]) for p in parts], axis=0)
        s = np.max([rank(cal[p], other[p]) for p in parts], axis=0)
        out[d] = s > np.quantile(s_cal, 1 - FLAG)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--basis", default="/tmp/galclip-template-basis.npz")
    ap.add_argument("--n-templates", type=int, default=120)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from galclip.data import open_dataset
    from galclip.data.splits import assign_splits
    from galclip.search.api import Catalog

    t0 = time.time()
    fitter = load_fitter(Path(args.basis), args.n_templates, args.k, 4242)
    print(f"basis ready ({time.time() - t0:.0f} s)", flush=True)
    model = Catalog(args.catalog).model.eval()
    cols = open_dataset(args.data).read_columns(["object_id", "redshift", "spectrum_flux",
                                                 "spectrum_ivar"])
    split, z = assign_splits(cols["object_id"]), cols["redshift"].astype(np.float64)
    pool_al, pool_po = encode(model, cols["spectrum_flux"], cols["spectrum_ivar"])
    print(f"{len(z)} simulated spectra encoded ({time.time() - t0:.0f} s)", flush=True)
    real = [s for s in real_spectra(Path(args.real)) if z.min() < s["z"] < z.max()]
    rf = np.stack([s["flux"] for s in real]).astype(np.float32)
    ri = np.stack([s["ivar"] for s in real]).astype(np.float32)
    r_al, r_po = encode(model, rf, ri)
    res = {}
    for name in ("test", "val"):
        rows = np.flatnonzero(split == name)
        res[name] = scores(pool_al[rows], pool_po[rows], pool_al, pool_po, z, rows, fitter,
                           cols["spectrum_flux"][rows], cols["spectrum_ivar"][rows])
        res[name]["z"] = z[rows]
        print(f"{name}: {len(rows)} scored ({time.time() - t0:.0f} s)", flush=True)
    res["real"] = scores(r_al, r_po, pool_al, pool_po, z, None, fitter, rf, ri)
    res["real"]["z"] = np.array([s["z"] for s in real])
    report(res, real, z)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {k: {c: np.asarray(v).tolist() for c, v in d.items()} for k, d in res.items()}
            | {"real_meta": [{"programme": s["programme"], "targetid": s["targetid"]}
                             for s in real]}, indent=1))
    print(f"({time.time() - t0:.0f} s)")


def wrong(d: dict) -> np.ndarray:
    return np.abs(d["z_knn"] - d["z"]) / (1 + d["z"]) >= WITHIN


def report(res: dict, real: list[dict], z: np.ndarray) -> None:
    fv, fr, ft = flags(res["test"], res["val"]), flags(res["test"], res["real"]), \
        flags(res["test"], res["test"])
    wr, wv = wrong(res["real"]), wrong(res["val"])
    tw = np.abs(res["real"]["z_template"] - res["real"]["z"]) / (1 + res["real"]["z"]) < WITHIN
    print(f"{len(real)} real spectra in the simulated range {z.min():.2f}-{z.max():.2f}: "
          f"k-NN z wrong for {wr.sum()}, template z right for {tw.sum()}; "
          f"val split: k-NN z wrong for {wv.mean():.1%} of {len(wv)}")
    print("| design | test (calibration) flagged | val flagged | val wrong: flagged | "
          "real flagged | real wrong and not flagged | real right but flagged |")
    print("|---|---|---|---|---|---|---|")
    for d, label in DESIGNS.items():
        print(f"| {d}: {label} | {ft[d].mean():.1%} | {fv[d].mean():.1%} ({fv[d].sum()}/"
              f"{len(fv[d])}) | {(fv[d] & wv).sum()}/{wv.sum()} | {fr[d].sum()}/{len(wr)} | "
              f"{(wr & ~fr[d]).sum()}/{wr.sum()} | {(~wr & fr[d]).sum()}/{(~wr).sum()} |")
    print("per real spectrum: programme, z, k-NN z, template z, then each design's score "
          "percentile among the calibration split (* = flagged)")
    for i, s in enumerate(real):
        cells = " ".join(f"{d}={np.mean(res['test'][d] < res['real'][d][i]):.3f}"
                         f"{'*' if fr[d][i] else ' '}" for d in "ABCDTE")
        print(f"  {s['programme']:5s} z {s['z']:.3f} knn {res['real']['z_knn'][i]:.3f} "
              f"tmpl {res['real']['z_template'][i]:.3f}  {cells}")


if __name__ == "__main__":
    main()
