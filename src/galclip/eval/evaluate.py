"""``galclip evaluate``: every downstream test of a trained model, and the report.

1. The embeddings of the training split and the evaluation split (``test`` by default; a
   stored ``split`` column wins, else the id hash of :mod:`galclip.data.splits`). Given the
   catalog made from this model and dataset (``catalog``, ``galclip evaluate --catalog``), they
   are its stored vectors -- what ``galclip serve`` searches, so the report scores what users
   get; otherwise the dataset is embedded with the same inference function and precision policy
   as ``galclip embed`` (:func:`galclip.models.inference.embed_dataset`: fp32 on a CPU, bf16
   autocast on a GPU).
2. Zero-shot k-NN (image, spectrum, spectrum→image) with AstroCLIP's k and, beside it, with each
   property's k chosen on the validation split (``knn.k_grid``; the validation rows are
   embedded too), few-shot MLP probes and morphology, the
   label-efficiency curve, retrieval (pools and the whole set) and same-modality neighbour
   agreement (:mod:`galclip.eval.tasks`).
3. Baselines on the same split (:mod:`galclip.eval.baselines`): the unaligned encoders' pooled
   features (k-NN), a photometry MLP, a supervised ResNet18 on images and a conv+attention
   network on spectra.
4. ``metrics.json`` with provenance, figures, ``report.md`` and ``report.html``
   (:mod:`galclip.eval.report`).

Configuration: an :class:`~galclip.eval.schema.EvalConfig` (defaults -> preset ``cpu``/``gpu``
or YAML file -> ``key=value``: :func:`galclip.eval.schema.evaluation_config`).
Embeddings are cached in ``OUT/cache``, keyed by the model's checksum, the dataset's fingerprint
(:func:`galclip.storage.fingerprint`) and the rows, so a rerun after an interruption skips the
embedding step and another dataset in the same ``OUT`` never reuses them. A finished report is a
resume state (``OUT/.evaluate-state.json``): rerunning with the same model, data, catalog,
encoders and config does nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from galclip import storage
from galclip.eval.probes import ProbeConfig
from galclip.eval.schema import Budget, EvalConfig, ImageBaseline, SpectrumBaseline
from galclip.eval.tasks import MORPH_PREFIX
from galclip.modalities import MODALITIES, NAMES, input_columns, rows_with
from galclip.resume import ResumeState
from galclip.storage import atomic_write, sha256_file

STATE = ".evaluate-state.json"
REPORT_FILES = ("metrics.json", "report.md", "report.html")


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name




# ----------------------------------------------------------------------------- data
def _cap(idx: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """A seeded, sorted subset of at most ``n`` of the row indices ``idx``."""
    if n is None or len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=int(n), replace=False))


def load_split_rows(ds, cfg: EvalConfig) -> dict[str, Any]:
    """Row indices of the train and evaluation splits (galaxies with both an image and a
    spectrum: ``has_image``/``has_spectrum`` when present), and their scalar label columns."""
    from galclip.data.splits import split_indices

    cols = ds.manifest["columns"]
    scalar = [c for c, spec in cols.items() if not spec["shape"]]
    labels = ds.read_columns(scalar)
    stored = labels.get("split")
    d, seed = cfg.data, cfg.seed
    paired = rows_with(labels)  # rows holding both modalities

    def rows(split: str, cap: int | None) -> np.ndarray:
        idx = split_indices(labels["object_id"], split, stored=stored)
        return _cap(idx[paired[idx]], cap, seed)

    train, test = rows("train", d.max_train), rows(d.test_split, d.max_test)
    if d.test_split == "train" or _shared(labels, train, test):
        raise ValueError(f"{ds.path}: the evaluation split '{d.test_split}' shares galaxies "
                         "with the training split; choose val or test")
    for name, idx in (("train", train), (d.test_split, test)):
        if len(idx) < 2:
            raise ValueError(f"{ds.path}: split '{name}' has {len(idx)} rows; need at least 2")
    sel = cfg.knn.select_split
    select = (rows(sel, d.max_test) if cfg.knn.k_grid and sel != d.test_split
              else np.zeros(0, dtype=np.int64))
    if _shared(labels, select, train) or _shared(labels, select, test):
        raise ValueError(f"{ds.path}: the split '{sel}' that k is chosen on (knn.select_split) "
                         "shares galaxies with the training or the evaluation split")
    return {"train": train, "test": test, "select": select, "labels": labels,
            "unpaired": int((~paired).sum()),
            "reference": len(split_indices(labels["object_id"], "reference", stored=stored))}


def _shared(labels: Mapping[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> bool:
    """Whether rows ``a`` and ``b`` hold a galaxy (object_id) in common."""
    return bool(np.intersect1d(labels["object_id"][a], labels["object_id"][b]).size)


def _subset(labels: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[idx] for k, v in labels.items()}


@contextlib.contextmanager
def capture_pooled(model):
    """Record the backbones' pooled features while the CLIP model embeds (forward hooks), so the
    unaligned baseline needs no second pass when the backbones were frozen during alignment."""
    feats: dict[str, list] = {m: [] for m in NAMES}
    hooks = [getattr(model, f"{m}_encoder").register_forward_hook(
        lambda _mod, _inp, out, m=m: feats[m].append(out["pooled"].detach().float().cpu().numpy()))
        for m in feats if hasattr(model, f"{m}_encoder")]
    try:
        yield feats
    finally:
        for h in hooks:
            h.remove()


def _embed(model, ds, idx: np.ndarray, batch_size: int, device: str, cache: Path | None,
           tag: str, pooled: bool = False) -> dict[str, np.ndarray]:
    """Embeddings of rows ``idx`` in batches of ``batch_size`` via the shared inference function,
    cached in ``cache`` under
    the dataset's fingerprint and the rows; with ``pooled``, also the backbones' pooled
    features (``image_pooled``, ``spectrum_pooled``)."""
    from torch.utils.data import Subset

    from galclip.models.inference import embed_dataset

    key = hashlib.sha256(idx.tobytes()).hexdigest()[:16]
    path = cache / f"{tag}-{ds.fingerprint[:16]}-{key}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    with capture_pooled(model) if pooled else contextlib.nullcontext({}) as feats:
        out = embed_dataset(model, Subset(ds, idx.tolist()), batch_size=batch_size, device=device,
                            progress=True)
    out.update({MODALITIES[m].pooled_column: np.concatenate(v) for m, v in feats.items() if v})
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **out)
    return out


def _check_aligned(emb: Mapping[str, np.ndarray], ids: np.ndarray, where: str) -> None:
    if not np.array_equal(emb["object_id"], ids):
        raise ValueError(f"{where}: embeddings are not aligned with the label rows (object_id)")


def _modalities(emb: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {m.name: emb[m.embedding_column] for m in MODALITIES.values() if m.embedding_column in emb}


# ----------------------------------------------------------------------------- context
@dataclasses.dataclass
class Context:
    """Everything the stages share: config, dataset, rows, labels and embeddings."""

    cfg: EvalConfig
    ds: Any
    device: str
    train_idx: np.ndarray
    test_idx: np.ndarray
    labels_train: dict
    labels_test: dict
    properties: list
    morph_columns: list
    emb_train: dict
    emb_test: dict
    notes: list = dataclasses.field(default_factory=list)
    pooled_train: dict = dataclasses.field(default_factory=dict)  # the model's backbone features
    pooled_test: dict = dataclasses.field(default_factory=dict)
    labels_val: dict = dataclasses.field(default_factory=dict)  # the split k is chosen on
    emb_val: dict = dataclasses.field(default_factory=dict)     # (empty: no k-from-val rows)

    @property
    def y_train(self) -> np.ndarray:
        from galclip.eval.tasks import label_matrix

        return label_matrix(self.labels_train, self.properties)

    @property
    def y_test(self) -> np.ndarray:
        from galclip.eval.tasks import label_matrix

        return label_matrix(self.labels_test, self.properties)

    @property
    def y_val(self) -> np.ndarray:
        from galclip.eval.tasks import label_matrix

        return label_matrix(self.labels_val, self.properties)

    @property
    def probe(self) -> ProbeConfig:
        return ProbeConfig(**dataclasses.asdict(self.cfg.probe), seed=self.cfg.seed)

    def morph(self, labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {c: labels[c] for c in self.morph_columns}


# ----------------------------------------------------------------------------- stages
def run_galclip(ctx: Context) -> tuple[list, dict, dict]:
    """Zero-shot k-NN, few-shot probes (with morphology) and label efficiency of galclip."""
    from galclip.eval.probes import label_efficiency
    from galclip.eval.tasks import knn_results, knn_val_results, probe_results

    y_tr, y_te = ctx.y_train, ctx.y_test
    res, preds = knn_results(ctx.emb_train, y_tr, ctx.emb_test, y_te, ctx.properties,
                             k=ctx.cfg.knn.k)
    if ctx.emb_val:
        r1, p1 = knn_val_results(ctx.emb_train, y_tr, ctx.emb_val, ctx.y_val, ctx.emb_test, y_te,
                                 ctx.properties, ctx.cfg.knn.k_grid, split=ctx.cfg.knn.select_split)
        res, preds = res + r1, {**preds, **p1}
    r2, p2 = probe_results(ctx.emb_train, y_tr, ctx.emb_test, y_te, ctx.properties, ctx.probe,
                           morph_train=ctx.morph(ctx.labels_train),
                           morph_test=ctx.morph(ctx.labels_test))
    fractions = ctx.cfg.label_efficiency.fractions
    curves = {f"galclip {m}": label_efficiency(x, y_tr, ctx.emb_test[m], y_te, ctx.properties,
                                               fractions, ctx.probe)
              for m, x in ctx.emb_train.items()}
    return res + r2, {**preds, **p2}, curves


def run_photometry(ctx: Context) -> tuple[list, dict, dict]:
    """MLP on g, r, z asinh magnitudes (properties, morphology, label efficiency)."""
    from galclip.eval.baselines import PHOTOMETRY_COLUMNS, photometry_features
    from galclip.eval.probes import label_efficiency
    from galclip.eval.tasks import knn_results, knn_val_results, probe_results

    if any(c not in ctx.labels_train for c in PHOTOMETRY_COLUMNS):
        ctx.notes.append(f"photometry baseline skipped: no {'/'.join(PHOTOMETRY_COLUMNS)} columns")
        return [], {}, {}
    x_tr, x_te = photometry_features(ctx.labels_train), photometry_features(ctx.labels_test)
    res, preds = probe_results({"photometry": x_tr}, ctx.y_train, {"photometry": x_te},
                               ctx.y_test, ctx.properties, ctx.probe, model="MLP",
                               type_="supervised", morph_train=ctx.morph(ctx.labels_train),
                               morph_test=ctx.morph(ctx.labels_test))
    knn, kpreds = knn_results({"photometry": x_tr}, ctx.y_train, {"photometry": x_te}, ctx.y_test,
                              ctx.properties, k=ctx.cfg.knn.k, model="k-NN",
                              sources=(("photometry", "photometry", "photometry"),), type_="supervised")
    for r in knn:  # nothing trains: the budget is the reference set
        r["budget"] = f"no training; k = {ctx.cfg.knn.k} neighbours among {len(x_tr)} training galaxies"
    if ctx.emb_val:  # the same k-NN with each property's k chosen on the validation rows
        x_val = {"photometry": photometry_features(ctx.labels_val)}
        kv, kvp = knn_val_results({"photometry": x_tr}, ctx.y_train, x_val, ctx.y_val,
                                  {"photometry": x_te}, ctx.y_test, ctx.properties,
                                  ctx.cfg.knn.k_grid, model="k-NN (k from val)",
                                  sources=(("photometry", "photometry", "photometry"),),
                                  type_="supervised", split=ctx.cfg.knn.select_split)
        for r in kv:
            r["budget"] = f"no training; {r['budget']}"
        knn, kpreds = knn + kv, {**kpreds, **kvp}
    curve = label_efficiency(x_tr, ctx.y_train, x_te, ctx.y_test, ctx.properties,
                             ctx.cfg.label_efficiency.fractions, ctx.probe)
    return res + knn, {**preds, **kpreds}, {"photometry MLP": curve}


def run_photoz(ctx: Context) -> dict:
    """PIT, interval coverage, CRPS and photo-z metrics of the zero-shot redshift (image,
    spectrum, photometry) with split-conformal calibration (``galclip.eval.photoz``)."""
    from galclip.eval.baselines import PHOTOMETRY_COLUMNS, photometry_features
    from galclip.eval.photoz import photoz_results

    if "redshift" not in ctx.labels_train:
        return {}
    train, test = dict(ctx.emb_train), dict(ctx.emb_test)
    if all(c in ctx.labels_train for c in PHOTOMETRY_COLUMNS):
        train["photometry"] = photometry_features(ctx.labels_train)
        test["photometry"] = photometry_features(ctx.labels_test)
    from galclip.eval.predict import PredictError

    try:
        return photoz_results(train, ctx.labels_train["redshift"], test,
                              ctx.labels_test["redshift"], k=ctx.cfg.knn.k, seed=ctx.cfg.seed)
    except PredictError as e:
        ctx.notes.append(f"photo-z calibration skipped: {e}")
        return {}


def unaligned_encoders(model, meta: Mapping, paths: Mapping[str, str | None]) -> tuple[Any, str]:
    """The encoders before alignment: given files, else the CLIP model's frozen backbones."""
    from galclip.eval.baselines import PooledFeatures
    from galclip.models import load_encoder
    from galclip.models.clip import frozen_modalities

    run_cfg = (meta.get("extra") or {}).get("run_config") or {}
    optim = run_cfg.get("optim") or run_cfg.get("train") or {}  # "train": older files
    frozen = frozen_modalities(optim.get("freeze_backbones", False), optim.get("finetune"))
    encs, where = {}, []
    for m in NAMES:
        if paths.get(m):
            encs[m] = load_encoder(paths[m])
            where.append(f"{m}: {paths[m]}")
        elif m in frozen:
            encs[m] = getattr(model, f"{m}_encoder")
            where.append(f"{m}: the model's frozen backbone")
    if len(encs) < 2:
        return None, ("unaligned baseline skipped: the model's backbones were fine-tuned; pass "
                      "--image-encoder and --spectrum-encoder")
    return PooledFeatures(encs["image"], encs["spectrum"]), "; ".join(where)


def run_unaligned(ctx: Context, model, meta: Mapping, paths: Mapping, cache: Path) -> tuple[list, dict]:
    from galclip.eval.tasks import knn_results
    from galclip.models.checkpoint import read_metadata

    adapter, where = unaligned_encoders(model, meta, paths)
    ctx.notes.append(where if adapter is None else f"unaligned encoders: {where}")
    if adapter is None:
        return [], {}
    own = all(getattr(adapter, f"{m}_encoder") is getattr(model, f"{m}_encoder")
              for m in NAMES)
    if own and len(ctx.pooled_train) == 2:  # recorded during the CLIP pass: no second pass
        tr, te = ctx.pooled_train, ctx.pooled_test
    else:
        tag = "pooled-" + _files_key(paths)
        batch = ctx.cfg.data.batch_size
        tr = _modalities(_embed(adapter, ctx.ds, ctx.train_idx, batch, ctx.device, cache, f"{tag}-train"))
        te = _modalities(_embed(adapter, ctx.ds, ctx.test_idx, batch, ctx.device, cache, f"{tag}-test"))
    results, preds = [], {}
    for m in ("image", "spectrum"):  # an encoder file written as a random start says so
        note = read_metadata(paths[m]).get("note", "") if paths.get(m) else ""
        name = "random-init k-NN" if note.startswith("randomly initialised") else "unaligned k-NN"
        res, pred = knn_results(tr, ctx.y_train, te, ctx.y_test, ctx.properties,
                                k=ctx.cfg.knn.k, model=name, sources=((m, m, m),))
        results += res
        preds.update(pred)
    return results, preds


def _files_key(paths: Mapping[str, str | None]) -> str:
    """A short key of the encoder files given (their sha256), so a cache never outlives them."""
    shas = {m: sha256_file(p) for m, p in sorted(paths.items()) if p}
    return hashlib.sha256(repr(shas).encode()).hexdigest()[:8]


def _load_inputs(ds, idx: np.ndarray, kind: str, b: ImageBaseline | SpectrumBaseline) -> dict:
    """Preprocessed network inputs of rows ``idx`` (sorted), streamed in dataset order."""
    import torch
    from tqdm.auto import tqdm

    from galclip.eval.baselines import (
        preprocess_images,
        preprocess_log_spectra,
        preprocess_raw_images,
        preprocess_spectra,
    )
    from galclip.models import encoder_config

    spectra = (functools.partial(preprocess_log_spectra, preset=b.encoder)
               if kind == "spectrum" and b.arch == "conv" else preprocess_spectra)
    if kind == "image" and b.arch == "conv":  # room for the jittered crops (ImageAugment)
        size = int(encoder_config(b.encoder)["img_size"]) + 2 * b.shift
        images = functools.partial(preprocess_raw_images, size=size)
    elif kind == "image":
        images = functools.partial(preprocess_images, downsample=b.downsample)
    cols = list(MODALITIES[kind].inputs)
    keep = np.zeros(len(ds), dtype=bool)
    keep[idx] = True
    parts, start = [], 0
    for batch in tqdm(ds.iter_batches(256, cols), desc=f"loading {kind}s", leave=False):
        sel = keep[start:start + len(batch[cols[0]])]
        start += len(sel)
        if sel.any():
            parts.append(images(batch["image"][sel]) if kind == "image" else
                         spectra(batch["spectrum_flux"][sel], batch["spectrum_ivar"][sel]))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def run_supervised(ctx: Context, kind: str) -> tuple[list, dict]:
    """Train the image (ResNet) or spectrum (conv+attention) baseline; score on the test rows."""
    import torch

    from galclip.eval import baselines as B
    from galclip.eval.metrics import classification_metrics
    from galclip.eval.tasks import make_result, score_properties

    b, seed = getattr(ctx.cfg.baselines, kind), ctx.cfg.seed
    pos = _cap(np.arange(len(ctx.train_idx)), b.max_train, seed)  # rows of the train split
    x_tr = _load_inputs(ctx.ds, ctx.train_idx[pos], kind, b)
    x_te = _load_inputs(ctx.ds, ctx.test_idx, kind, b)
    torch.manual_seed(seed)
    backbone, model = _baseline_backbone(kind, b)
    morph_tr = {c: v[pos] for c, v in ctx.morph(ctx.labels_train).items()}
    net = B.SupervisedBaseline(backbone, _supervised_config(b, seed, ctx.device), ctx.device,
                               _baseline_augment(kind, b)).fit(x_tr, ctx.y_train[pos], morph_tr)
    pred, morph_pred = net.predict(x_te)
    morph = {c: classification_metrics(ctx.labels_test[c], morph_pred[c]) for c in ctx.morph_columns}
    r = make_result(kind, model, "supervised", score_properties(ctx.y_test, pred, ctx.properties),
                    morph)
    r["n_train"] = int(len(pos))
    r["budget"] = f"{len(pos)} training rows; {net.budget()}"
    return [r], {r["id"]: pred}


def _supervised_config(b: Budget, seed: int, device: str = "cpu"):
    """The training loop's settings of a baseline's budget (its precision resolved for ``device``)."""
    from galclip.eval.baselines import SupervisedConfig
    from galclip.precision import resolve

    try:
        precision = resolve(b.precision, device)
    except ValueError as e:
        raise ValueError(f"config field 'baselines.*.precision': {e}") from None
    return SupervisedConfig(epochs=b.epochs, batch_size=b.batch_size, lr=float(b.lr),
                            weight_decay=float(b.weight_decay), seed=seed, patience=b.patience,
                            lr_patience=b.lr_patience, precision=precision,
                            max_seconds=None if b.max_seconds is None else float(b.max_seconds))


def _baseline_augment(kind: str, b: ImageBaseline | SpectrumBaseline):
    """The conv baselines' training views (image ``shift`` > 0, spectrum ``augment: true``), else None."""
    from galclip.eval.baselines import ImageAugment, SpectrumAugment
    from galclip.models import encoder_config

    if kind == "spectrum":
        if not b.augment:
            return None
        if b.arch != "conv":
            raise ValueError("config field 'baselines.spectrum.augment' needs arch: conv (the log-λ "
                             f"baseline), got arch {b.arch!r}")
        return SpectrumAugment(noise_max=b.noise_max)
    if b.shift < 0:
        raise ValueError(f"config field 'baselines.image.shift' must be ≥ 0, got {b.shift}")
    if not b.shift:
        return None
    if b.arch != "conv":
        raise ValueError("config field 'baselines.image.shift' needs arch: conv (the raw-cutout "
                         f"baseline), got arch {b.arch!r}")
    return ImageAugment(int(encoder_config(b.encoder)["img_size"]), b.shift)


def _baseline_backbone(kind: str, b: ImageBaseline | SpectrumBaseline) -> tuple[Any, str]:
    """The supervised baseline's network and its name in the results table."""
    from galclip.eval import baselines as B

    if kind == "image" and b.arch == "conv":
        return B.ConvImage(b.encoder), "conv ResNet"
    if kind == "image":
        return B.image_backbone(b.arch), b.arch
    if b.arch == "conv":
        return B.LogLambdaConv(b.encoder), "1-D ResNet"
    if b.arch == "conv+attention":
        return B.SpectrumConvAttention(b.channels, b.depth, b.num_heads, b.conv_layers,
                                       b.stride), "conv+attention"
    raise ValueError(f"config field 'baselines.spectrum.arch': {b.arch!r}; choose conv or conv+attention")


def run_retrieval(ctx: Context) -> dict[str, Any]:
    """Cross-modal recall@k / median rank in pools and over the whole evaluation set, plus
    same-modality neighbour agreement."""
    from galclip.eval.tasks import neighbour_agreement
    from galclip.retrieval_metrics import retrieval_metrics

    img, spec = ctx.emb_test.get("image"), ctx.emb_test.get("spectrum")
    if img is None or spec is None:
        return {}
    pool, seed = ctx.cfg.retrieval.pool_size, ctx.cfg.seed
    out = {"whole_set": retrieval_metrics(img, spec, len(img), seed)}
    if pool < len(img):  # pools of `pool` galaxies compare across set sizes (chance = pool / 2)
        out = {f"pool_{pool}": retrieval_metrics(img, spec, pool, seed), **out}
    out["neighbour_agreement_r2"] = {
        f"{m}→{m}": neighbour_agreement(e, ctx.y_test, ctx.properties) for m, e in ctx.emb_test.items()}
    return out


# ----------------------------------------------------------------------------- driver
def _provenance(model_path: Path, meta: Mapping, ds, cfg: EvalConfig, command: str) -> dict:
    from galclip import __version__

    return {"command": command, "galclip_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {"path": str(model_path), "sha256": sha256_file(model_path),
                      "config": meta.get("config"),
                      "training": {k: v for k, v in (meta.get("extra") or {}).items()
                                   if k != "run_config"},
                      "run_config": (meta.get("extra") or {}).get("run_config")},
            "data": {"path": str(ds.path), "n_rows": ds.manifest["n_rows"],
                     "shards": [{k: s[k] for k in ("file", "sha256")} for s in ds.manifest["shards"]],
                     "provenance": ds.manifest.get("provenance")},
            "config": cfg.to_dict()}


def prepare(model_path: Path, data_dir: Path, out_dir: Path, cfg: EvalConfig,
            catalog: Path | None = None) -> tuple:
    """Load the model and data, embed both splits (or read their vectors from ``catalog``):
    returns (Context, model, meta, cache dir)."""
    from galclip import load_model
    from galclip.data import open_dataset
    from galclip.models.clip import read_checkpoint_metadata
    from galclip.search.catalog import catalog_embeddings

    device = _device(cfg.device)
    meta = read_checkpoint_metadata(model_path)
    model = load_model(model_path, device=device)
    ds = open_dataset(data_dir, columns=input_columns(),
                      verify=cfg.data.verify_checksums)
    rows = load_split_rows(ds, cfg)
    lab_tr, lab_te = _subset(rows["labels"], rows["train"]), _subset(rows["labels"], rows["test"])
    lab_val = _subset(rows["labels"], rows["select"])
    model_sha = sha256_file(model_path)
    cache = out_dir / "cache" / model_sha[:16]
    emb, pooled = {"select": {}}, {}
    parts = [("train", rows["train"], lab_tr), ("test", rows["test"], lab_te)]
    if len(rows["select"]) >= 2:
        parts.append(("select", rows["select"], lab_val))
    for name, idx, lab in parts:
        e = (catalog_embeddings(catalog, ds, model_sha, idx) if catalog else
             _embed(model, ds, idx, cfg.data.batch_size, device, cache, f"clip-{name}", pooled=True))
        _check_aligned(e, lab["object_id"], f"{data_dir} ({name})")
        emb[name] = _modalities(e)
        pooled[name] = {m.name: e[m.pooled_column] for m in MODALITIES.values() if m.pooled_column in e}
    props = [p for p in cfg.properties if p in rows["labels"]]
    if not props:
        raise ValueError(f"{data_dir}: none of the properties {cfg.properties} is a column")
    morph = sorted(c for c in rows["labels"] if c.startswith(MORPH_PREFIX))
    ctx = Context(cfg, ds, device, rows["train"], rows["test"], lab_tr, lab_te, props, morph,
                  emb["train"], emb["test"], pooled_train=pooled["train"],
                  pooled_test=pooled["test"], labels_val=lab_val, emb_val=emb["select"])
    ctx.notes += _select_notes(cfg, len(rows["select"]))
    if rows["unpaired"]:
        ctx.notes.append(f"{rows['unpaired']} galaxies lack an image or a spectrum "
                         "(has_image/has_spectrum) and are left out")
    if rows["reference"]:
        ctx.notes.append(f"{rows['reference']} look-up-only galaxies (split 'reference', galclip "
                         "simulate --reference) are in the dataset and its catalog; no k-NN, "
                         "probe or baseline here uses them")
    missing = [p for p in cfg.properties if p not in props]
    if missing:
        ctx.notes.append(f"properties not in the data, skipped: {missing}")
    return ctx, model, meta, cache


def _select_notes(cfg: EvalConfig, n: int) -> list[str]:
    """Why the k-from-val rows are missing, when they are (an empty grid asks for none)."""
    sel = cfg.knn.select_split
    if not cfg.knn.k_grid or n >= 2:
        return []
    if sel == cfg.data.test_split:
        return [f"k-from-val rows left out: k would be chosen on the scored split '{sel}'; set "
                f"knn.select_split to the other held-out split"]
    return [f"k-from-val rows left out: the split '{sel}' has {n} rows with both modalities"]


def _state(model_path: Path, data_dir: Path, out_dir: Path, cfg: EvalConfig,
           encoder_paths: Mapping[str, str | None], catalog: Path | None,
           injection: Mapping | None = None, real: Mapping | None = None) -> ResumeState:
    """The report's resume state: what it was computed from (files by checksum, folders by
    fingerprint, the resolved config)."""
    from galclip.data.format import read_manifest
    from galclip.search.catalog import catalog_fingerprint, read_catalog_manifest

    inputs = {"model_sha256": sha256_file(model_path),
              "data_fingerprint": storage.fingerprint(read_manifest(data_dir)["shards"]),
              "catalog_fingerprint": catalog_fingerprint(read_catalog_manifest(catalog)) if catalog
              else None,
              "encoders": {m: sha256_file(p) for m, p in sorted(encoder_paths.items()) if p},
              "config": cfg.to_dict(),
              **({"injection_sha256": injection["sha256"]} if injection else {}),
              **({"real_spectra_sha256": real["sha256"]} if real else {})}
    return ResumeState.open(out_dir / STATE, "galclip evaluate", inputs, on_change="restart")


def evaluate(model_path: str | Path, data_dir: str | Path, out_dir: str | Path, cfg: EvalConfig,
             encoder_paths: Mapping[str, str | None] | None = None, command: str = "",
             catalog: str | Path | None = None, injection: str | Path | None = None,
             real_spectra: str | Path | None = None) -> dict:
    """Run every evaluation stage and write ``metrics.json``, figures and the report.

    ``catalog``: score its stored vectors (made by this model from this dataset) instead of
    embedding the dataset again. ``injection``: an ``injection.json`` of
    ``benchmarks/outlier_injection.py`` made with this model, shown in the report
    (:mod:`galclip.eval.injection`). ``real_spectra``: the ``--json`` file of
    ``benchmarks/sim_to_real.py`` made with this model, shown in the report
    (:mod:`galclip.eval.real_spectra`). Rerun with unchanged inputs, returns the finished report's
    metrics and computes nothing."""
    import torch

    from galclip.eval.injection import read_injection
    from galclip.eval.real_spectra import read_real_spectra
    from galclip.eval.report import write_report

    model_path, out_dir = Path(model_path), Path(out_dir)
    catalog = Path(catalog) if catalog else None
    model_sha = sha256_file(model_path) if injection or real_spectra else ""
    planted = read_injection(injection, model_sha) if injection else None
    real = read_real_spectra(real_spectra, model_sha) if real_spectra else None
    out_dir.mkdir(parents=True, exist_ok=True)
    state = _state(model_path, Path(data_dir), out_dir, cfg, encoder_paths or {}, catalog, planted,
                   real)
    if state.complete and all((out_dir / f).is_file() for f in REPORT_FILES):
        print(f"{out_dir}: the report is up to date (same model, data and config); nothing to do")
        return json.loads((out_dir / "metrics.json").read_text())
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    ctx, model, meta, cache = prepare(model_path, Path(data_dir), out_dir, cfg, catalog)
    timings["embed"] = time.perf_counter() - t
    results, preds, curves = [], {}, {}

    def stage(name: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        timings[name] = time.perf_counter() - t0
        return out

    r, p, c = stage("galclip", run_galclip, ctx)
    results, preds, curves = results + r, {**preds, **p}, {**curves, **c}
    if ctx.morph_columns:
        from galclip.eval.tasks import majority_class_result

        results.append(majority_class_result(ctx.morph(ctx.labels_train), ctx.morph(ctx.labels_test)))
    b = cfg.baselines
    if b.unaligned.enabled:
        r, p = stage("unaligned", run_unaligned, ctx, model, meta, encoder_paths or {}, cache)
        results, preds = results + r, {**preds, **p}
    if b.photometry.enabled:
        r, p, c = stage("photometry", run_photometry, ctx)
        results, preds, curves = results + r, {**preds, **p}, {**curves, **c}
    photoz = stage("photoz", run_photoz, ctx)
    for kind in NAMES:
        if getattr(b, kind).enabled:
            r, p = stage(f"supervised_{kind}", run_supervised, ctx, kind)
            results, preds = results + r, {**preds, **p}
    retrieval = stage("retrieval", run_retrieval, ctx)
    metrics = {"provenance": _provenance(model_path, meta, ctx.ds, cfg, command),
               "splits": {"train": int(len(ctx.train_idx)),
                          cfg.data.test_split: int(len(ctx.test_idx))},
               "properties": ctx.properties, "morphology_columns": ctx.morph_columns,
               "results": results, "label_efficiency": curves, "retrieval": retrieval, "photoz": photoz,
               "notes": ctx.notes, "timings_s": timings}
    if planted:
        metrics["injection"] = planted
    if real:
        metrics["real_spectra"] = real
    t0 = time.perf_counter()
    write_report(out_dir, metrics, ctx, preds)
    timings["report"] = time.perf_counter() - t0
    state.mark_complete({"results": len(results)})
    return metrics
