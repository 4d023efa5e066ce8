"""Exploration behind the CPU alignment recipe (issue 13), step 1: cache what the alignment sees.

For every row of a dataset, with the given frozen pretrained encoders: the pooled features and
tokens of both backbones, the central 64 px cutout and the 1024-bin log-λ spectrum (inputs for
fine-tuning experiments), redshift, the four physical properties and the split. One .npz per
dataset, read by ``align_heads.py``.

    python benchmarks/explore/align_features.py --data runs/demo/data --out runs/feat-sim0.npz \\
        --image-encoder runs/demo/pretrain-image/encoder.safetensors \\
        --spectrum-encoder runs/demo/pretrain-spectrum/encoder.safetensors
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

PROPS = ["redshift", "log_mstar", "logz_mw", "tage_mw", "log_ssfr"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--image-encoder", required=True)
    p.add_argument("--spectrum-encoder", required=True)
    p.add_argument("--crop", type=int, default=64)
    args = p.parse_args()

    from galclip.data import open_dataset
    from galclip.models import load_encoder
    from galclip.models.image_encoder import center_crop
    from galclip.train.data import split_rows

    ds = open_dataset(args.data, columns=["object_id", "image", "spectrum_flux", "spectrum_ivar"])
    labels = open_dataset(args.data, verify=False).read_columns(PROPS)
    split = np.full(len(ds), "", dtype="<U5")
    for s in ("train", "val", "test"):
        split[split_rows(ds, s, ("image", "spectrum"))] = s
    img_enc, spec_enc = load_encoder(args.image_encoder).eval(), load_encoder(args.spectrum_encoder).eval()
    out: dict[str, list] = {k: [] for k in ("img", "flux", "ivar", "img_pooled", "img_tokens",
                                            "spec_pooled", "spec_tokens", "spec_mask")}
    t0 = time.time()
    with torch.inference_mode():
        for lo in range(0, len(ds), 128):
            rows = [ds[i] for i in range(lo, min(lo + 128, len(ds)))]
            img = torch.tensor(np.stack([r["image"] for r in rows])).float()
            flux = torch.tensor(np.stack([r["spectrum_flux"] for r in rows])).float()
            ivar = torch.tensor(np.stack([r["spectrum_ivar"] for r in rows])).float()
            fi = img_enc(img)
            lf, li = spec_enc.rebin(flux, ivar)
            fs = spec_enc.forward_rebinned(lf, li)
            out["img"].append(center_crop(img, args.crop).numpy())
            out["flux"].append(lf.numpy())
            out["ivar"].append(li.numpy())
            out["img_pooled"].append(fi["pooled"].numpy())
            out["img_tokens"].append(fi["tokens"].half().numpy())
            out["spec_pooled"].append(fs["pooled"].numpy())
            out["spec_tokens"].append(fs["tokens"].half().numpy())
            out["spec_mask"].append(fs["padding_mask"].numpy())
            print(f"{lo + len(rows)}/{len(ds)} rows, {time.time() - t0:.0f} s", flush=True)
    arrays = {k: np.concatenate(v) for k, v in out.items()}
    arrays.update({k: np.asarray(labels[k], np.float32) for k in PROPS}, split=split)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
