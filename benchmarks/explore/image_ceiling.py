"""Control behind issue 13's "pretrained image encoder ≥ 2× random init" target: how much redshift
can *any* model get from what a cutout shows, on this simulation, at the demo's training size?

The simulator records the noise-free parameters it renders each cutout from. Models trained with
the redshift labels on those parameters (no pixel noise, no PSF, no neighbours, no sky) bound
from above what an image model can learn at the same training size, up to the colour gradient
between bulge and disc (the pixels show it; the per-component colours are not stored):

  fluxes       noise-free total g, r, z fluxes (asinh magnitudes), what the photometry
               baselines use
  + fibre      the r-band flux inside the 1.5" fibre (a concentration measure)
  + structure  bulge and disc half-light radii, bulge-to-total (r), bulge Sérsic index, axis
               ratios, inclination

and, measured from the (noisy) pixels themselves, the aperture growth curve:

  apertures 5   asinh of the flux inside 2, 4, 8, 16, 32 px of the centre per band (the conv
                image encoder's aperture features)
  apertures 12  the same at 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24 px, as colours and
                growth-curve ratios

Each set is fitted by a gradient-boosted tree ensemble (scikit-learn HistGradientBoosting,
early stopping on 15 % of the training rows), an MLP (early stopping) and k-NN (k = 64,
standardized features). Test R² on the held-out test split; training on the train split,
first ``--max-train`` rows (the demo's evaluation uses 4000).

  python benchmarks/explore/image_ceiling.py --data runs/demo/data [--data2 runs/sim-seed1]
"""
from __future__ import annotations

import argparse

import numpy as np

FLUX = ["flux_g", "flux_r", "flux_z"]
STRUCT = ["r_half_bulge_arcsec", "r_half_disc_arcsec", "bulge_to_total", "sersic_bulge",
          "axis_ratio", "bulge_axis_ratio", "inclination_deg"]


def feature_sets(t: dict) -> dict[str, np.ndarray]:
    from galclip.eval.baselines import photometry_features

    mags = photometry_features(t)  # the photometry baselines' asinh magnitudes
    colours = np.stack([mags[:, 0] - mags[:, 1], mags[:, 1] - mags[:, 2]], 1)
    fluxes = np.concatenate([mags, colours], 1)
    fibre = np.log10(np.maximum(t["fiber_flux_r"], 1e-6) / np.maximum(t["flux_r"], 1e-6))[:, None]
    struct = np.stack([np.log10(np.maximum(t[c], 1e-3)) if c.startswith("r_half") else t[c]
                       for c in STRUCT], 1)
    return {"fluxes": fluxes, "fluxes + fibre": np.concatenate([fluxes, fibre], 1),
            "fluxes + fibre + structure": np.concatenate([fluxes, fibre, struct], 1)}


def pixel_features(ds, rows: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    from galclip.models.image_conv import aperture_fluxes

    radii5 = torch.tensor([2.0, 4.0, 8.0, 16.0, 32.0])
    radii12 = torch.tensor([1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0])
    a5, a12 = [], []
    for start in range(0, len(rows), 256):
        img = torch.from_numpy(np.stack([ds[int(r)]["image"] for r in rows[start:start + 256]]))
        lo = (img.shape[-1] - 64) // 2
        img = img[..., lo:lo + 64, lo:lo + 64].float()
        a5.append(torch.asinh(aperture_fluxes(img, radii5)).flatten(1).numpy())
        a12.append(aperture_fluxes(img, radii12).numpy())
    f12 = np.concatenate(a12)                                     # (N, bands, radii)
    total = np.maximum(f12[:, :, -1:], 1e-4)
    mag = np.arcsinh(f12[:, :, -1])                               # per band, at 24 px
    growth = np.clip(f12 / total, -1, 2).reshape(len(f12), -1)    # concentration per band
    colour = (np.arcsinh(f12[:, 0] / 0.0066) - np.arcsinh(f12[:, 1] / 0.01),
              np.arcsinh(f12[:, 1] / 0.01) - np.arcsinh(f12[:, 2] / 0.025))  # per radius
    return {"apertures 5 (pixels)": np.concatenate(a5),
            "apertures 12 (pixels)": np.concatenate([mag, growth, *colour], 1)}


def models(seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "gradient-boosted trees": HistGradientBoostingRegressor(
            max_iter=2000, learning_rate=0.05, early_stopping=True, validation_fraction=0.15,
            n_iter_no_change=50, random_state=seed),
        "MLP 2x128": make_pipeline(StandardScaler(), MLPRegressor(
            hidden_layer_sizes=(128, 128), alpha=1e-3, early_stopping=True, validation_fraction=0.15,
            n_iter_no_change=30, max_iter=2000, random_state=seed)),
        "k-NN k=64": make_pipeline(StandardScaler(), KNeighborsRegressor(64, weights="distance")),
    }


def run(data: str, max_train: int, seed: int) -> None:
    from sklearn.metrics import r2_score

    from galclip.data import open_dataset
    from galclip.train.data import split_rows

    ds = open_dataset(data, verify=False)
    t = ds.read_columns(["redshift", "fiber_flux_r", *FLUX, *STRUCT])
    z = np.asarray(t["redshift"], float)
    tr = split_rows(ds, "train")[:max_train]
    te = split_rows(ds, "test")
    print(f"\n{data}: {len(tr)} train, {len(te)} test rows")
    print(f"| features | {' | '.join(models(seed))} |")
    print("|---|" + "---|" * len(models(seed)))
    sets = feature_sets(t)
    both = np.union1d(tr, te)
    for name, x in pixel_features(ds, both).items():
        full = np.full((len(z), x.shape[1]), np.nan)
        full[both] = x
        sets[name] = full
    for name, x in sets.items():
        x = np.asarray(x, float)
        scores = []
        for m in models(seed).values():
            m.fit(x[tr], z[tr])
            scores.append(r2_score(z[te], m.predict(x[te])))
        print(f"| {name} | " + " | ".join(f"{s:.3f}" for s in scores) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, nargs="+")
    ap.add_argument("--max-train", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for d in args.data:
        run(d, args.max_train, args.seed)


if __name__ == "__main__":
    main()
