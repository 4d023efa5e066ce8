"""What limits ``galclip outliers`` on planted spectrum anomalies (AGN-like broad lines, blends)?

The companion of ``injection_control.py`` (image artefacts) for the spectrum kinds of
``benchmarks/outlier_injection.py``: on the demo's model with DESI's programmes (30 % LRGs up to
z = 1.2) the embedding scores find AGN-like broad lines and fibre blends worse than the issue's
0.85. On the same altered dataset (its ``injected`` column):

1. **Is it the data?** Controls built differently from the embedding:
   - *a physical statistic, no labels* (AGN): at the catalogue redshift, the broad-line excess
     over the local continuum around Hα, Hβ and Hγ (flux within ±4000 km/s minus the median of
     the 6000–10000 km/s sidebands, the narrow core ±600 km/s left out), in units of its noise,
     summed in quadrature over the lines inside the spectrum;
   - *supervised probes* (labels; 5-fold stratified cross-validation, out-of-fold scores, the
     same logistic regression as ``injection_control.py``): on the 128-d spectrum embedding, on
     the spectrum backbone's pooled features before the projection (with ``--model``; in the CPU
     recipe the backbone is the self-supervised pretrained encoder, frozen in alignment), on
     the spectrum itself binned in the observed frame (20 pixels, 16 Å, a bin; each spectrum
     divided by its median), and binned in the rest frame at the catalogue redshift (3,500–7,000
     Å in 10 Å bins, bins outside the spectrum at 0 with a coverage mask). A probe on the pixels
     that finds a kind easily says the information is there; a probe on the embedding that
     fails says the embedding does not keep it.
2. **Where the AGN are missed**: AUROC of each detector for galaxies with Hα inside the
   spectrum (z < 0.49) and for those without it.

    PYTHONPATH=src .venv/bin/python benchmarks/explore/injection_control_spectra.py \\
        --data runs/inject-s0/data --catalog runs/inject-s0/catalog --out runs/control-spec-s0.json \\
        [--model runs/demo/align/model.safetensors]

``--combine A.json B.json ...`` summarises several draws (mean AUROC [min, max]).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from injection_control import combine, probe  # noqa: E402
from outlier_injection import KINDS, auroc  # noqa: E402

C_KMS = 299_792.458
LINES = {"halpha": 6564.6, "hbeta": 4862.7, "hgamma": 4341.7}   # vacuum, Å
BROAD, CORE, SIDE = 4000.0, 600.0, (6000.0, 10000.0)           # km/s
HALPHA_LIMIT_Z = 0.49                                            # Hα + 4000 km/s inside 9824 Å


def broad_line_snr(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, z: np.ndarray
                   ) -> np.ndarray:
    """(n,) quadrature sum over Hα, Hβ, Hγ of each line's broad excess in noise units."""
    out = np.zeros(len(flux))
    for rest in LINES.values():
        v = (wave[None] / (rest * (1 + z[:, None])) - 1) * C_KMS            # (n, L) km/s
        good = ivar > 0
        wing = good & (np.abs(v) <= BROAD) & (np.abs(v) > CORE)
        side = good & (np.abs(v) >= SIDE[0]) & (np.abs(v) <= SIDE[1])
        inside = (wing.sum(1) > 20) & (side.sum(1) > 20)
        cont = np.array([np.median(f[s]) if s.any() else 0.0 for f, s in zip(flux, side,
                                                                             strict=True)])
        excess = np.where(wing, flux - cont[:, None], 0).sum(1)
        noise = np.sqrt(np.where(wing, 1 / np.where(good, ivar, 1), 0).sum(1)) + 1e-12
        out += np.where(inside, np.maximum(excess / noise, 0) ** 2, 0)
    return np.sqrt(out)


def observed_bins(flux: np.ndarray, ivar: np.ndarray, width: int = 20) -> np.ndarray:
    """(n, L / width) median-normalised spectra, averaged over ``width`` pixels (bad pixels 0)."""
    f = np.where(ivar > 0, flux, 0.0)
    f = f / (np.median(np.abs(f), 1, keepdims=True) + 1e-9)
    n = f.shape[1] // width * width
    return f[:, :n].reshape(len(f), -1, width).mean(2)


def rest_bins(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, z: np.ndarray,
              lo: float = 3500.0, hi: float = 7000.0, step: float = 10.0) -> np.ndarray:
    """(n, 2 B) median-normalised flux in rest-frame bins at the catalogue redshift and the
    bins' coverage (1 where the spectrum reaches them)."""
    edges = np.arange(lo, hi + step, step)
    f = np.where(ivar > 0, flux, 0.0)
    f = f / (np.median(np.abs(f), 1, keepdims=True) + 1e-9)
    out = np.zeros((len(f), 2 * (len(edges) - 1)))
    for i in range(len(f)):
        rest = wave / (1 + z[i])
        idx = np.digitize(rest, edges) - 1
        ok = (idx >= 0) & (idx < len(edges) - 1) & (ivar[i] > 0)
        s = np.bincount(idx[ok], f[i][ok], minlength=len(edges) - 1)
        c = np.bincount(idx[ok], minlength=len(edges) - 1)
        out[i, :len(edges) - 1] = np.where(c > 0, s / np.maximum(c, 1), 0)
        out[i, len(edges) - 1:] = c > 0
    return out


def pooled_features(model_path: str, flux: np.ndarray, ivar: np.ndarray, batch: int = 100
                    ) -> np.ndarray:
    """(n, D) the spectrum backbone's pooled output (before the CLIP projection)."""
    import torch

    import galclip

    enc = galclip.load_model(model_path).spectrum_encoder.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, len(flux), batch):
            f = torch.tensor(flux[lo:lo + batch], dtype=torch.float32)
            out.append(enc(f, torch.tensor(ivar[lo:lo + batch], dtype=torch.float32))["pooled"]
                       .numpy())
    return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="the altered dataset (outlier_injection.py)")
    p.add_argument("--catalog", help="its catalog (embeddings and the galclip scores)")
    p.add_argument("--out", help="JSON of the table")
    p.add_argument("--model", help="model.safetensors: adds the probe on the backbone's pooled "
                                   "features")
    p.add_argument("--combine", nargs="+", metavar="JSON", help="summarise earlier runs' JSONs")
    args = p.parse_args()
    if args.combine:
        return combine(args.combine)
    if not (args.data and args.catalog and args.out):
        p.error("--data, --catalog and --out are required (or --combine)")
    from galclip import conventions as C
    from galclip.data import open_dataset
    from galclip.eval.outliers import score_catalog
    from galclip.search.catalog import read_catalog_table, read_embeddings

    ds = open_dataset(args.data)
    cols = ds.read_columns(["object_id", "spectrum_flux", "spectrum_ivar", "redshift", "injected"])
    flux = np.asarray(cols["spectrum_flux"], np.float64)
    ivar = np.asarray(cols["spectrum_ivar"], np.float64)
    z, kinds = np.asarray(cols["redshift"], float), np.asarray(cols["injected"])
    wave = C.wavelength_grid()
    ids = read_catalog_table(args.catalog, ["object_id"]).column(0).to_numpy()
    x, rows = read_embeddings(args.catalog, "spectrum")
    at = {int(o): i for i, o in enumerate(ids[rows])}
    emb = x[[at[int(o)] for o in cols["object_id"]]]
    sc = score_catalog(args.catalog).columns
    at = {int(o): i for i, o in enumerate(sc["object_id"])}
    order = np.array([at[int(o)] for o in cols["object_id"]])
    scores: dict = {"galclip: mismatch_score": sc["mismatch_score"][order],
                    "galclip: rarity_spectrum": sc["rarity_spectrum"][order],
                    "no labels: broad-line excess S/N at the catalogue z":
                        broad_line_snr(wave, flux, ivar, z)}
    show = ("agn", "blend", "sky_residual", "broken_arm")
    feats = {"probe (labels): spectrum embedding": emb,
             "probe (labels): observed-frame binned spectrum": observed_bins(flux, ivar),
             "probe (labels): rest-frame binned spectrum": rest_bins(wave, flux, ivar, z)}
    if args.model:
        feats["probe (labels): spectrum backbone pooled features"] = pooled_features(
            args.model, flux, ivar)
    for name, f in feats.items():
        scores[name] = {}
        for kind in show:
            sel = (kinds == 0) | (kinds == KINDS.index(kind) + 1)
            v = np.full(len(kinds), np.nan)
            v[sel] = probe(f[sel], kinds[sel] != 0)
            scores[name][kind] = v
    res, lowz = {}, z < HALPHA_LIMIT_Z
    for name, v in scores.items():
        res[name] = {}
        for kind in show:
            code, vk = KINDS.index(kind) + 1, v[kind] if isinstance(v, dict) else v
            res[name][kind] = {"auroc": auroc(vk[kinds == code], vk[kinds == 0])}
            if kind == "agn":
                for part, m in (("agn, Hα in", lowz), ("agn, Hα out", ~lowz)):
                    res[name].setdefault(part, {})["auroc"] = auroc(vk[(kinds == code) & m],
                                                                    vk[(kinds == 0) & m])
    n_agn = {"in": int(((kinds == KINDS.index("agn") + 1) & lowz).sum()),
             "out": int(((kinds == KINDS.index("agn") + 1) & ~lowz).sum())}
    Path(args.out).write_text(json.dumps({"args": vars(args), "n_agn_halpha": n_agn,
                                          "scores": res}, indent=1))
    cells = list(next(iter(res.values())))
    print(f"AGN planted: {n_agn['in']} with Hα inside the spectrum (z < {HALPHA_LIMIT_Z}), "
          f"{n_agn['out']} without")
    print("| detector | " + " | ".join(f"{k} AUROC" for k in cells) + " |")
    print("|---|" + "---|" * len(cells))
    for name, r in res.items():
        print(f"| {name} | " + " | ".join(f"{r[k]['auroc']:.3f}" if k in r else "—"
                                          for k in cells) + " |")


if __name__ == "__main__":
    main()
