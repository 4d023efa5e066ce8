"""The whole galclip pipeline end to end on a simulated survey (``galclip demo``).

:func:`run_demo` runs the stages simulate (the survey, and in the CPU preset look-up-only
``reference`` galaxies after it that only the catalog holds) -> pretrain (or, in the CPU recipe,
randomly initialise) the image encoder -> pretrain the spectrum encoder -> align (CLIP) -> embed
-> index -> evaluate (scoring the catalog's vectors, the ones the explorer searches), each into
its own folder under ``out``. Each stage records its resume state there
(:class:`galclip.resume.ResumeState`); a stage that finished with the same settings is skipped,
so a killed run continues where it stopped. The settings are the preset, n, reference, seed and
precision *and* what they resolve to (:func:`stage_recipes`: the simulator's settings, each
stage's resolved config and every earlier stage's): after an upgrade that changes a packaged
preset, or with other options, the stages concerned start again in a cleared folder instead of
being skipped with an older recipe's results (or refused by the training stage's own resume
check). Ends with :func:`summary_text`. :data:`PRESETS` holds each preset (``cpu``, ``gpu``,
``tiny``) as a :class:`DemoPreset`: the dataset sizes and each stage's :class:`StageConfig`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = "runs/demo"
PRESET = "cpu"


@dataclass(frozen=True)
class StageConfig:
    """A training or evaluation stage's config: a packaged preset name (or a YAML file) and
    dotted ``key=value`` overrides on top of it."""

    preset: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoPreset:
    """One way to run the demo: how many galaxies it simulates and each stage's config."""

    n: int                           # survey galaxies simulated (train / val / test)
    pretrain_spectrum: StageConfig   # self-supervised spectrum pretraining (galclip pretrain)
    align: StageConfig               # CLIP alignment (galclip align)
    evaluate: StageConfig            # evaluation and report (galclip evaluate)
    #: the image encoder: pretrained with this config, or, when None, a random initialisation of
    #: the encoder preset ``image_init``, which then learns in alignment against the frozen
    #: spectrum encoder (the CPU recipe: on a few thousand cutouts SimCLR pretraining made the
    #: aligned embeddings worse than a random start; benchmarks/RESULTS.md, small-data recipe)
    pretrain_image: StageConfig | None = None
    image_init: str | None = None
    #: look-up-only galaxies simulated after the survey (``galclip simulate --reference``): in
    #: the catalog the explorer searches, the OOD score's calibration and ``predict``'s pool,
    #: never trained on or evaluated. A denser reference reads real spectra better than a larger
    #: training set does (benchmarks/RESULTS.md, "A larger reference catalog")
    reference: int = 0

    def __post_init__(self) -> None:
        if (self.pretrain_image is None) == (self.image_init is None):
            raise ValueError("a demo preset either pretrains the image encoder (pretrain_image) "
                             "or initialises one at random (image_init), not both or neither")


_TINY_EVAL = ("baselines.image.epochs=1", "baselines.spectrum.epochs=1",
              "baselines.image.max_train=64", "baselines.spectrum.max_train=64",
              "retrieval.pool_size=20", "plots.embedding_map=pca", "plots.dpi=40", "knn.k=8")
PRESETS: dict[str, DemoPreset] = {
    "cpu": DemoPreset(n=5000, reference=15000, image_init="image-conv-nano",
                      pretrain_spectrum=StageConfig("spectrum-cpu"),
                      align=StageConfig("cpu"), evaluate=StageConfig("cpu")),
    "gpu": DemoPreset(n=100000, pretrain_image=StageConfig("image-astrodino"),
                      pretrain_spectrum=StageConfig("spectrum-specformer"),
                      align=StageConfig("gpu"), evaluate=StageConfig("gpu")),
    "tiny": DemoPreset(n=240, reference=48, image_init="image-conv-nano",
                       pretrain_spectrum=StageConfig("spectrum-cpu", (
                           "trainer.max_steps=4", "data.batch_size=8",
                           "trainer.checkpoint_every_n_steps=2")),
                       align=StageConfig("cpu", ("trainer.max_epochs=1", "trainer.max_steps=4",
                                                 "data.batch_size=16", "objective.pool_size=20")),
                       evaluate=StageConfig("cpu", _TINY_EVAL)),
}


@dataclass
class Step:
    """One step of the pipeline: what it does, its folder under ``out``, the function that runs
    it and the files that show it finished."""

    name: str
    folder: str
    run: Callable[[Path], Any]
    outputs: list[str] = field(default_factory=list)


def build_steps(out: Path, preset: str, n: int, seed: int, workers: int | None,
                precision: str = "auto", reference: int | None = None) -> list[Step]:
    p = PRESETS[preset]
    # the training stages' and the supervised baselines' precision (galclip.precision)
    fixed = precision != "auto"
    train_prec, eval_prec = _training_overrides(precision)
    data = out / "data"
    enc = {m: out / f"pretrain-{m}" / "encoder.safetensors" for m in ("image", "spectrum")}
    model = out / "align" / "model.safetensors"

    def simulate(folder: Path) -> None:
        from galclip.sim.survey import SimConfig, simulate_survey

        simulate_survey(folder, SimConfig(n=n, seed=seed, reference=_reference(p, reference)),
                        workers=workers)

    def pretrain(modality: str) -> Callable[[Path], Any]:
        def run(folder: Path) -> None:
            stage = getattr(p, f"pretrain_{modality}")
            if stage is None:
                import torch

                from galclip.models import create_encoder, save_encoder

                torch.manual_seed(seed)
                save_encoder(create_encoder(p.image_init), folder / "encoder.safetensors",
                             extra={"note": f"randomly initialised {p.image_init} (seed {seed})"})
                return
            from galclip.train.runner import train

            train(f"pretrain-{modality}", data, folder, stage.preset,
                  [*stage.overrides, *train_prec])
        return run

    image_stage = ("initialise the image encoder (random: alignment trains it)"
                   if p.pretrain_image is None else "pretrain the image encoder (self-supervised)")

    def align(folder: Path) -> None:
        from galclip.train.runner import train

        train("align", data, folder, p.align.preset, [
            *p.align.overrides, *train_prec, f"model.image_checkpoint={enc['image']}",
            f"model.spectrum_checkpoint={enc['spectrum']}"])

    def embed(folder: Path) -> None:
        import torch

        import galclip
        from galclip.search.catalog import build_catalog

        device = "cuda" if torch.cuda.is_available() else "cpu"
        build_catalog(galclip.load_model(model), data, folder, model_path=model, device=device)

    def index(folder: Path) -> None:
        from galclip.search.catalog import read_catalog_manifest
        from galclip.search.index import build_index

        modalities = read_catalog_manifest(folder)["modalities"]
        for modality in modalities:
            build_index(folder, modality)
        if "spectrum" in modalities:      # the OOD score's redshift check (docs/search.md)
            from galclip.eval.template_fit import write_catalog_basis

            write_catalog_basis(folder)

    def evaluate(folder: Path) -> None:
        from galclip.config import save_config
        from galclip.eval.evaluate import evaluate as run_eval
        from galclip.eval.schema import evaluation_config

        cfg = evaluation_config(p.evaluate.preset, [*p.evaluate.overrides, *eval_prec])
        save_config(cfg.to_dict(), folder / "config.yaml")
        run_eval(model, data, folder, cfg, {k: str(v) for k, v in enc.items()},
                 command=f"galclip demo --out {out} --preset {preset}"
                 + (f" --precision {precision}" if fixed else ""), catalog=out / "catalog")

    return [
        Step("simulate a survey", "data", simulate, ["manifest.json"]),
        Step(image_stage, "pretrain-image", pretrain("image"), ["encoder.safetensors"]),
        Step("pretrain the spectrum encoder (self-supervised)", "pretrain-spectrum",
              pretrain("spectrum"), ["encoder.safetensors"]),
        Step("align images and spectra (CLIP)", "align", align, ["model.safetensors"]),
        Step("embed the survey", "catalog", embed, ["manifest.json"]),
        Step("index the embeddings (FAISS)", "catalog", index, ["index-image.faiss"]),
        Step("evaluate and write the report", "report", evaluate, ["metrics.json", "report.html"]),
    ]


def _training_overrides(precision: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The training stages' and the supervised baselines' precision overrides (none for auto)."""
    if precision == "auto":
        return (), ()
    return ((f"trainer.precision={precision}",),
            tuple(f"baselines.{m}.precision={precision}" for m in ("image", "spectrum")))


def _reference(p: DemoPreset, reference: int | None) -> int:
    return p.reference if reference is None else reference


def stage_recipes(preset: str, n: int, seed: int, precision: str = "auto",
                  reference: int | None = None) -> dict[str, str]:
    """A fingerprint of what each stage folder's result depends on: its own resolved settings and
    every earlier stage's (the survey's :class:`~galclip.sim.survey.SimConfig`, each training
    stage's resolved config, the evaluation config), so that a changed packaged preset reruns the
    stage it changes and everything after it."""
    from dataclasses import asdict

    from galclip.eval.schema import evaluation_config
    from galclip.sim.survey import SimConfig
    from galclip.train.schema import train_config

    p = PRESETS[preset]
    train_prec, eval_prec = _training_overrides(precision)

    def trained(stage: str, sc: StageConfig) -> dict[str, Any]:
        return train_config(stage, sc.preset, [*sc.overrides, *train_prec]).to_dict()

    parts = {
        "data": asdict(SimConfig(n=n, seed=seed, reference=_reference(p, reference))),
        "pretrain-image": ({"random_init": p.image_init, "seed": seed} if p.pretrain_image is None
                           else trained("pretrain-image", p.pretrain_image)),
        "pretrain-spectrum": trained("pretrain-spectrum", p.pretrain_spectrum),
        "align": trained("align", p.align),
        "catalog": {},
        "report": evaluation_config(p.evaluate.preset, [*p.evaluate.overrides, *eval_prec]).to_dict(),
    }
    out, sofar = {}, []
    for folder, part in parts.items():
        sofar.append(part)
        out[folder] = hashlib.sha256(json.dumps(sofar, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return out


def run_demo(out: str | Path = OUT, preset: str = PRESET, n: int | None = None, seed: int = 0,
             workers: int | None = None, precision: str = "auto", reference: int | None = None
             ) -> dict[str, Any]:
    """Run (or resume) every stage; returns the evaluation metrics. ``precision``: the training
    stages' and supervised baselines' (``auto``: bf16 autocast where the hardware has bf16;
    ``32-true`` gives the same figures on every machine; :mod:`galclip.precision`).
    ``reference``: look-up-only galaxies simulated after the survey (default: the preset's)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    from galclip.precision import CHOICES
    from galclip.resume import ResumeState, StateChanged

    if precision not in CHOICES:
        raise ValueError(f"unknown precision {precision!r}; choose from {list(CHOICES)}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n = n or PRESETS[preset].n
    stages = build_steps(out, preset, n, seed, workers, precision, reference)
    recipes = stage_recipes(preset, n, seed, precision, reference)
    for k, st in enumerate(stages, 1):
        folder = out / st.folder
        key = {"preset": preset, "n": n, "seed": seed, "recipe": recipes.get(st.folder)}
        done = folder / f".{st.run.__name__}-done.json"
        try:
            state = ResumeState.open(done, f"demo: {st.name}", key, on_change="refuse")
        except StateChanged:
            # run with other settings (or an older recipe): start this stage again from an empty
            # folder; the training stages' own resume check would refuse to mix the two
            print(f"[{k}/{len(stages)}] {st.name}: settings changed since the run in {folder}; "
                  "clearing it", flush=True)
            shutil.rmtree(folder)
            state = ResumeState.open(done, f"demo: {st.name}", key)
        complete = state.complete and all((folder / o).exists() for o in st.outputs)
        print(f"[{k}/{len(stages)}] {st.name}: " + ("done already, skipped" if complete else
                                                    f"running -> {folder}"), flush=True)
        if complete:
            continue
        t0 = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        st.run(folder)
        missing = [o for o in st.outputs if not (folder / o).exists()]
        if missing:
            raise RuntimeError(f"stage '{st.name}' finished without writing {missing} in {folder}")
        state.mark_complete({"seconds": round(time.perf_counter() - t0, 1)})
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    print(summary_text(metrics, out))
    return metrics


def summary_text(metrics: dict[str, Any], out: Path) -> str:
    """The evaluation table, retrieval figures, paths and the serve command."""
    from galclip.eval.report import summary_row

    def f(x):
        return "   —  " if x is None or x != x else f"{x:6.3f}"

    lines = ["", "galclip demo: summary (held-out galaxies)", "",
             f"{'source':>15} {'model':>18} {'type':>11} {'z R2':>7} {'props R2':>9} {'morph acc':>9}"]
    for r in metrics["results"]:
        if "k_selection" in r:  # shown beside its k = 64 row below
            continue
        s = summary_row(r, metrics["properties"])
        lines.append(f"{s['source']:>15} {s['model']:>18} {s['type']:>11} {f(s['redshift_r2']):>7} "
                     f"{f(s['mean_property_r2']):>9} {f(s['morphology_accuracy']):>9}")
    lines += [*_k_from_val_lines(metrics), "", *_retrieval_lines(metrics.get("retrieval", {})), "",
              f"report:       {out / 'report' / 'report.html'}",
              f"checkpoints:  {out / 'pretrain-image' / 'encoder.safetensors'}",
              f"              {out / 'pretrain-spectrum' / 'encoder.safetensors'}",
              f"              {out / 'align' / 'model.safetensors'}",
              f"explore:      galclip serve {out / 'catalog'} --data {out / 'data'}",
              *_reference_lines(out), ""]
    return "\n".join(lines)


def _reference_lines(out: Path) -> list[str]:
    """What the catalog holds beyond the survey (the simulated look-up-only galaxies)."""
    try:
        manifest = json.loads((out / "data" / "manifest.json").read_text())
    except (OSError, ValueError):
        return []
    ref = (manifest.get("simulator") or {}).get("reference_rows")
    if not ref:
        return []
    return [f"              the catalog holds {manifest['n_rows']} galaxies: the {ref['first']} of "
            f"the survey and {ref['n']} more simulated for look-up only (split 'reference': "
            "never trained on or evaluated)"]


def _k_from_val_lines(metrics: dict[str, Any]) -> list[str]:
    """The k-NN rows with k chosen on the validation split, each beside its k = 64 row (the
    protocol of AstroCLIP, whose pool was ~40× larger): redshift R² with the chosen k, and the
    mean R² of the other properties."""
    from galclip.eval.report import summary_row

    rows = {(r["source"], r["model"].removesuffix(" (k from val)"), r["type"]): r
            for r in metrics["results"] if "k_selection" not in r}
    out = []
    for r in (r for r in metrics["results"] if "k_selection" in r):
        base = rows.get((r["source"], r["model"].removesuffix(" (k from val)"), r["type"]))
        if base is None:
            continue
        a, b = summary_row(base, metrics["properties"]), summary_row(r, metrics["properties"])
        k = r["k"].get("redshift")
        zk = f"{_num(b['redshift_r2'])} (k={k})" if k else _num(b["redshift_r2"])
        out.append(f"{r['source']:>15} {base['model']:>18} {_num(a['redshift_r2']):>9} {zk:>17} "
                   f"{_num(a['mean_property_r2']):>13} {_num(b['mean_property_r2']):>14}")
    if not out:
        return []
    sel = next(r["k_selection"] for r in metrics["results"] if "k_selection" in r)
    k0 = f"k={metrics['provenance']['config']['knn']['k']}"
    return ["", f"k-NN with each property's k chosen on the {sel['split']} split ({sel['n']} "
                f"galaxies, k from {sel['grid']}), beside the {k0} rows above:",
            f"{'source':>15} {'model':>18} {'z R2 ' + k0:>9} {'z R2 k from val':>17} "
            f"{'props R2 ' + k0:>13} {'props R2 k val':>14}", *out]


def _num(x) -> str:
    return "—" if x is None or x != x else f"{x:.3f}"


def _retrieval_lines(ret: dict[str, Any]) -> list[str]:
    """One line per pool and direction from ``metrics['retrieval']`` (flat ``dir/metric`` keys)."""
    from galclip.eval.report import RETRIEVAL_DIRECTIONS, retrieval_pools

    out = []
    for _, block in retrieval_pools(ret):
        chance = block["pool_size"] / 2
        for d in RETRIEVAL_DIRECTIONS:
            out.append(f"retrieval {d.replace('_to_', '->')} in a pool of {block['pool_size']:.0f}: "
                       f"median rank {block[f'{d}/median_rank']:.0f} (chance {chance:.0f}), "
                       f"R@1 {block.get(f'{d}/R@1', float('nan')):.2f}, "
                       f"R@10 {block.get(f'{d}/R@10', float('nan')):.2f}")
    return out or ["retrieval: not in metrics"]
