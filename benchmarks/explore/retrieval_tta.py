"""Cross-modal retrieval with image embeddings averaged over the symmetries of the square (issue 13).

A galaxy has no preferred orientation and the alignment trains on rotated and mirrored cutouts,
but the conv network is not invariant: each of the 8 symmetries (and each small shift) gives a
slightly different embedding. Averaging them (test-time augmentation) removes that part of the
embedding's noise. This prints median ranks and k-NN redshift for 1 (plain), 4 (rotations) and
8 (rotations and mirrors) views, optionally with +-``--shift`` px shifted views as well.

    PYTHONPATH=src python benchmarks/explore/retrieval_tta.py --data runs/demo/data \\
        --model runs/demo/align/model.safetensors [--pool-rows all]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from align_quality import held_out_and_train, knn_redshift  # noqa: E402


def image_embeddings(model, ds, rows: np.ndarray, views: list[tuple[int, bool, int, int]],
                     batch_size: int = 128) -> np.ndarray:
    """Unit-norm mean over ``views`` (quarter turns, mirror, dy, dx) of the projected embedding."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from galclip.augment import apply_dihedral

    model.eval()
    out = []
    with torch.inference_mode():
        for batch in DataLoader(Subset(ds, rows.tolist()), batch_size=batch_size, shuffle=False):
            x = batch["image"].float()
            acc = 0.0
            for k, flip, dy, dx in views:
                v = torch.roll(x, shifts=(dy, dx), dims=(-2, -1)) if (dy or dx) else x
                n = v.shape[0]
                v = apply_dihedral(v, [k] * n, [flip] * n)
                acc = acc + model.encode_image(v, normalize=True)
            out.append(torch.nn.functional.normalize(acc, dim=-1).numpy())
    return np.concatenate(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--pool-rows", choices=["heldout", "all"], default="heldout")
    p.add_argument("--pool", type=int, default=1000)
    p.add_argument("--shift", type=int, default=0, help="also average views shifted by +-N px")
    args = p.parse_args()

    from torch.utils.data import Subset

    from galclip.data import open_dataset
    from galclip.models.clip import load_model
    from galclip.models.inference import embed_dataset
    from galclip.retrieval_metrics import retrieval_metrics

    model = load_model(args.model)
    ds = open_dataset(args.data, columns=["object_id", "image", "spectrum_flux", "spectrum_ivar"])
    held, train = held_out_and_train(ds, 4000, args.pool_rows)
    z = open_dataset(args.data, verify=False).read_columns(["redshift"])["redshift"]
    spec_held = embed_dataset(model, Subset(ds, held.tolist()), 64, modalities=["spectrum"])
    spec_train = embed_dataset(model, Subset(ds, train.tolist()), 64, modalities=["spectrum"])
    q = ~np.isin(held, train)
    d8 = [(k, f, 0, 0) for f in (False, True) for k in range(4)]
    variants = {"1 view": [(0, False, 0, 0)], "4 rotations": d8[:4], "8 symmetries": d8}
    if args.shift:
        s = args.shift
        variants[f"8 symmetries x 5 shifts (+-{s} px)"] = [
            (k, f, dy, dx) for k, f, _, _ in d8 for dy, dx in ((0, 0), (s, 0), (-s, 0), (0, s), (0, -s))]
    rows = []
    for name, views in variants.items():
        t0 = time.time()
        ih = image_embeddings(model, ds, held, views)
        it = image_embeddings(model, ds, train, views)
        r = retrieval_metrics(ih, spec_held["spectrum_embedding"], pool_size=args.pool)
        rows.append({
            "views": name, "n_views": len(views), "seconds": round(time.time() - t0, 1),
            "median_rank": [r["image_to_spectrum/median_rank"], r["spectrum_to_image/median_rank"]],
            "R@10": [round(r["image_to_spectrum/R@10"], 3), round(r["spectrum_to_image/R@10"], 3)],
            "aligned_image_knn_R2": round(knn_redshift(it, z[train], ih[q], z[held][q])["R2"], 3),
            "spectrum_to_image_knn_R2": round(knn_redshift(
                spec_train["spectrum_embedding"], z[train], ih[q], z[held][q])["R2"], 3)})
        print(json.dumps(rows[-1]), flush=True)
    print("| image views | median rank i→s / s→i | R@10 | aligned image k-NN z R² | "
          "spectrum→image k-NN z R² | seconds |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['views']} | {r['median_rank'][0]:g} / {r['median_rank'][1]:g} | "
              f"{r['R@10'][0]} / {r['R@10'][1]} | {r['aligned_image_knn_R2']} | "
              f"{r['spectrum_to_image_knn_R2']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
