"""Measure ``galclip outliers`` on anomalies injected into a simulated survey.

The simulator knows every galaxy, so known anomalies can be planted and the scores judged by
how well they find them. From a simulated dataset this script writes a copy in which a
fraction of galaxies per kind is altered (column ``injected``: 0 = clean, else the kind's code),
embeds it with a model, scores it (``galclip.eval.outliers``) and reports, per kind, the AUROC
(clean galaxies against that kind) and the precision in the top 1 % of (clean + that kind), for
each score and for their combination (the largest of the three quantiles).

Kinds (each one alteration of the arrays; the row's labels are untouched):

- ``swap``: images exchanged between two galaxies whose redshifts differ by > 0.1
  (a mis-association);
- ``blend``: another galaxy (Δz > 0.05) added into the fibre: its spectrum scaled to the
  target's median flux, and its image scaled alike and shifted 3 px (0.8″);
- ``trail``: a satellite trail across the image (all bands, Gaussian profile σ 1 px,
  peak 8 × the image noise);
- ``star``: a saturated star 15–40 px from the centre, clipped at saturation with a vertical
  bleed trail;
- ``missing_band``: one band of the image set to zero;
- ``broken_arm``: the r or z spectrograph arm's flux scaled by 0.3 (a failed calibration);
- ``sky_residual``: residuals of 40 sky lines (6800–9800 Å) of ±(4–10) σ;
- ``agn``: broad Hα, Hβ, Hγ (FWHM 5000 km/s), Hα peak 1.5 × the local continuum.

Usage (after ``make demo``; a survey with another seed that nothing trained on):

    .venv/bin/galclip simulate --n 1000 --seed 7 --out runs/sim-seed7
    .venv/bin/python benchmarks/outlier_injection.py --data runs/sim-seed7 \\
        --model runs/demo/align/model.safetensors --out runs/inject-seed7

Writes ``OUT/data`` (the altered dataset), ``OUT/catalog`` and ``OUT/injection.json`` (with
the model's sha256: ``galclip evaluate --injection OUT/injection.json`` puts the table in the
report), and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from galclip import conventions as C

KINDS = ("swap", "blend", "trail", "star", "missing_band", "broken_arm", "sky_residual", "agn")
ARMS = {"r": (5660.0, 7720.0), "z": (7470.0, 9824.0)}
C_KMS = 299_792.458


def image_noise(img: np.ndarray) -> np.ndarray:
    """Robust per-band noise (3,) of an image (1.4826 MAD)."""
    flat = img.reshape(img.shape[0], -1)
    return 1.4826 * np.median(np.abs(flat - np.median(flat, 1, keepdims=True)), 1) + 1e-6


def add_trail(img, rng):
    h, w = img.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    theta = rng.uniform(0, np.pi)
    off = rng.uniform(-20, 20)
    d = (xx - w / 2) * np.sin(theta) - (yy - h / 2) * np.cos(theta) - off
    return img + 8 * image_noise(img)[:, None, None] * np.exp(-0.5 * d ** 2)[None]


def add_star(img, rng):
    h, w = img.shape[1:]
    r, a = rng.uniform(15, 40), rng.uniform(0, 2 * np.pi)
    cy, cx = h / 2 + r * np.sin(a), w / 2 + r * np.cos(a)
    yy, xx = np.mgrid[0:h, 0:w]
    noise = image_noise(img)[:, None, None]
    star = 2000 * noise * np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0 ** 2)[None]
    sat = 200 * noise
    out = np.minimum(img + star, sat)
    col = int(np.clip(round(cx), 0, w - 1))
    rows = slice(int(max(cy - 12, 0)), int(min(cy + 12, h)))
    out[:, rows, col] = sat[:, 0]                         # bleed trail along the column
    return out


def missing_band(img, rng):
    out = img.copy()
    out[rng.integers(0, 3)] = 0.0
    return out


def broken_arm(flux, wave, rng):
    lo, hi = ARMS[("r", "z")[rng.integers(0, 2)]]
    return np.where((wave >= lo) & (wave < hi), 0.3 * flux, flux)


def sky_residual(flux, ivar, wave, rng):
    sigma = np.where(ivar > 0, 1 / np.sqrt(np.maximum(ivar, 1e-30)), 0.0)
    out = flux.copy()
    for centre in rng.uniform(6800, 9800, 40):
        i = int((centre - C.WAVE_MIN) / C.WAVE_STEP)
        sl = slice(max(i - 4, 0), i + 5)
        prof = np.exp(-0.5 * ((wave[sl] - centre) / 1.2) ** 2)
        out[sl] += rng.choice([-1, 1]) * rng.uniform(4, 10) * sigma[sl] * prof
    return out


def add_agn(flux, wave, z):
    out = flux.copy()
    cont = np.median(np.abs(flux)) + 1e-3
    for rest, rel in ((6564.6, 1.0), (4862.7, 1 / 3), (4341.7, 1 / 6)):
        lam = rest * (1 + z)
        sig = lam * 5000 / C_KMS / 2.355
        out += 1.5 * rel * cont * np.exp(-0.5 * ((wave - lam) / sig) ** 2)
    return out


def blend(cols, i, j, rng):
    s = np.clip(np.median(np.abs(cols["spectrum_flux"][i])) /
                max(np.median(np.abs(cols["spectrum_flux"][j])), 1e-6), 0.3, 3.0)
    cols["spectrum_flux"][i] = cols["spectrum_flux"][i] + s * cols["spectrum_flux"][j]
    cols["image"][i] = cols["image"][i] + s * np.roll(cols["image"][j], (3, 0), axis=(1, 2))


def partner(z, i, taken, rng, dz):
    """A galaxy not yet altered whose redshift differs from galaxy i's by more than dz."""
    cand = np.flatnonzero(~taken & (np.abs(z - z[i]) > dz))
    return int(rng.choice(cand))


def inject(cols: dict, fraction: float, seed: int) -> np.ndarray:
    """Alter ``cols`` in place; returns the kind code per row (0 = clean)."""
    rng = np.random.default_rng(seed)
    n = len(cols["object_id"])
    z = np.asarray(cols["redshift"], float)
    wave = C.wavelength_grid()
    kind = np.zeros(n, np.int8)
    per = max(2, int(round(fraction * n)))
    order = iter(rng.permutation(n))
    for code, name in enumerate(KINDS, start=1):
        done = 0
        while done < per:
            i = next(order)
            if kind[i]:
                continue
            if name in ("swap", "blend"):
                j = partner(z, i, kind > 0, rng, 0.1 if name == "swap" else 0.05)
                kind[j] = code if name == "swap" else -1       # a blend's donor stays clean
                if name == "swap":
                    cols["image"][[i, j]] = cols["image"][[j, i]]
                    done += 1
                else:
                    blend(cols, i, j, rng)
            elif name in ("trail", "star", "missing_band"):
                cols["image"][i] = {"trail": add_trail, "star": add_star,
                                    "missing_band": missing_band}[name](cols["image"][i], rng)
            elif name == "broken_arm":
                cols["spectrum_flux"][i] = broken_arm(cols["spectrum_flux"][i], wave, rng)
            elif name == "sky_residual":
                cols["spectrum_flux"][i] = sky_residual(cols["spectrum_flux"][i],
                                                        cols["spectrum_ivar"][i], wave, rng)
            else:
                cols["spectrum_flux"][i] = add_agn(cols["spectrum_flux"][i], wave, z[i])
            kind[i] = code
            done += 1
    return np.where(kind < 0, 0, kind).astype(np.int8)


def write_injected(src: Path, out: Path, fraction: float, seed: int) -> np.ndarray:
    from galclip.data import Provenance, open_dataset, shard_name, write_manifest, write_shard

    ds = open_dataset(src)
    cols = ds.read_columns(list(ds.columns))
    cols = {c: np.array(v) for c, v in cols.items()}
    kinds = inject(cols, fraction, seed)
    cols["injected"] = kinds
    out.mkdir(parents=True, exist_ok=True)
    entry = write_shard(out / shard_name(0), {c: v.astype(np.float32) if v.dtype == np.float64
                                              and v.ndim > 1 else v for c, v in cols.items()})
    write_manifest(out, [entry], Provenance(
        command=f"benchmarks/outlier_injection.py --data {src} --fraction {fraction} --seed {seed}",
        config={"fraction": fraction, "seed": seed}, seed=seed),
        extra={"injected_kinds": {str(i + 1): k for i, k in enumerate(KINDS)}})
    return kinds


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(allv, kind="stable"), kind="stable").astype(float) + 1
    for v in np.unique(allv):                                       # average ranks of ties
        m = allv == v
        ranks[m] = ranks[m].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def precision_at(scores: np.ndarray, is_pos: np.ndarray, frac: float = 0.01) -> float:
    ok = np.isfinite(scores)
    s, p = scores[ok], is_pos[ok]
    top = max(1, int(round(frac * len(s))))
    return float(p[np.argsort(-s, kind="stable")[:top]].mean())


def score_table(cols: dict, kinds: np.ndarray) -> dict:
    from galclip.eval.outliers import _quantile_of

    scores = {c: cols[c] for c in ("mismatch_score", "rarity_image", "rarity_spectrum")}
    scores["combined"] = np.fmax(np.fmax(_quantile_of(scores["mismatch_score"]),
                                         scores["rarity_image"]), scores["rarity_spectrum"])
    out = {}
    for code, name in enumerate(KINDS, start=1):
        sel = (kinds == 0) | (kinds == code)
        out[name] = {"n": int((kinds == code).sum()), **{
            s: {"auroc": auroc(v[kinds == code], v[kinds == 0]),
                "precision_top1pct": precision_at(v[sel], kinds[sel] == code)}
            for s, v in scores.items()}}
    return out


def markdown(table: dict) -> str:
    names = ("mismatch_score", "rarity_image", "rarity_spectrum", "combined")
    lines = ["| kind | n | " + " | ".join(f"{s} AUROC / P@1%" for s in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for kind, r in table.items():
        lines.append(f"| {kind} | {r['n']} | " + " | ".join(
            f"{r[s]['auroc']:.3f} / {r[s]['precision_top1pct']:.2f}" for s in names) + " |")
    return "\n".join(lines)


def combine(paths: list[str]) -> str:
    """Mean AUROC [min, max] per kind and score over several draws' injection.json files."""
    runs = [json.loads(Path(f).read_text())["kinds"] for f in paths]
    names = ("mismatch_score", "rarity_image", "rarity_spectrum", "combined")
    lines = [f"| kind ({len(runs)} draws) | n | " + " | ".join(f"{s} AUROC" for s in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for kind in runs[0]:
        cells = []
        for s in names:
            a = np.array([r[kind][s]["auroc"] for r in runs])
            cells.append(f"{a.mean():.3f} [{a.min():.3f}, {a.max():.3f}]")
        n = sum(r[kind]["n"] for r in runs)
        lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="simulated dataset folder")
    p.add_argument("--model", help="model.safetensors that embeds it")
    p.add_argument("--out", help="output folder")
    p.add_argument("--fraction", type=float, default=0.03, help="galaxies per kind (fraction)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--combine", nargs="+", metavar="JSON",
                   help="summarise several draws' injection.json (mean AUROC and range)")
    args = p.parse_args()
    if args.combine:
        print(combine(args.combine))
        return
    if not (args.data and args.model and args.out):
        p.error("--data, --model and --out are required (or --combine)")
    import galclip
    from galclip.eval.outliers import score_catalog
    from galclip.search.catalog import build_catalog
    from galclip.search.index import build_index

    out = Path(args.out)
    kinds = write_injected(Path(args.data), out / "data", args.fraction, args.seed)
    model = galclip.load_model(args.model)
    build_catalog(model, out / "data", out / "catalog", model_path=args.model, overwrite=True)
    for m in ("image", "spectrum"):
        build_index(out / "catalog", m, verbose=False)
    scores = score_catalog(out / "catalog")
    table = score_table(scores.columns, kinds)
    from galclip.storage import sha256_file

    (out / "injection.json").write_text(json.dumps({"args": vars(args), "model_sha256":
                                                    sha256_file(args.model), "kinds": table},
                                                   indent=1))
    print(markdown(table))


if __name__ == "__main__":
    main()
