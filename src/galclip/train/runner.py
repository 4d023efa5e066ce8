"""One runner for every training stage (``pretrain-image``, ``pretrain-spectrum``, ``align``).

``train(stage, data_dir, out_dir, config, overrides)``, the one way to start a stage, resolves
the config (:func:`galclip.train.schema.train_config`) and runs it: seeding, the run
folder, the resume policy, the Lightning Trainer (one precision policy, one set of loggers and
checkpoints) and the export of the stage's self-describing weights. A run folder holds::

    config.yaml            the resolved config
    state.json             the run's resume state (galclip.resume.ResumeState): inputs (dataset and
                           checkpoint fingerprints), whether it finished
    checkpoints/last.ckpt  Lightning state, every ``trainer.checkpoint_every_n_steps`` steps, each
                           epoch and at the end (written atomically; it resumes the run exactly:
                           :mod:`galclip.train.resumable`)
    logs/version_N/        CSV metrics, one folder per attempt (first run, each resume)
    tensorboard/           the same for TensorBoard, if it is installed
    <weights>              encoder.safetensors (pretraining) or model.safetensors (alignment)

**Resume policy** (one rule for every stage): a run folder belongs to one config and one set of
inputs. Rerunning with the same config and inputs resumes an interrupted run from ``last.ckpt``,
and is a no-op (nothing trained, nothing written) once the run has finished. Only
``trainer.max_epochs`` and ``trainer.max_steps`` may change, to extend (or shorten) a run: it
continues from its last state. Any other change to the config or the inputs is refused with a
:class:`~galclip.config.ConfigError` that names the keys; use a new folder.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from galclip.config import ConfigError, read_yaml, save_config
from galclip.resume import ResumeState
from galclip.train.schema import TrainConfig, TrainerConfig, build_module, train_config

#: config keys that may change when a run is resumed (to extend it)
RESUMABLE = {("trainer", "max_epochs"), ("trainer", "max_steps")}
STATE = "state.json"
LAST = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class Stage:
    """What differs between training stages; everything else is the runner's."""

    name: str
    weights: str                                  # file name of the exported weights
    loaders: Callable[[TrainConfig, Path], tuple[Any, Any]]   # (train, val or None)
    export: Callable[[Any, Path, dict[str, Any]], None]       # (module, path, run info)
    input_files: Callable[[TrainConfig], list[str]] = lambda cfg: []  # files the config names
    distributed_sampler: bool = True              # False: the stage's sampler splits rows by rank


def get_stage(name: str) -> Stage:
    """The stage called ``name`` (:mod:`galclip.train.registry`)."""
    from galclip.train.registry import stage

    return stage(name)


# ----------------------------------------------------------------------------- resume policy
def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], prefix: tuple = ()) -> list[tuple]:
    """The dotted keys (as tuples) whose values differ between two nested configs."""
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            keys += config_diff(va, vb, (*prefix, k))
        elif va != vb:
            keys.append((*prefix, k))
    return keys


def run_inputs(stage: Stage, cfg: TrainConfig, data_dir: str | Path) -> dict[str, str]:
    """Fingerprints of what a run reads besides its config: the dataset (its manifest, which
    lists every shard's sha256) and the files the config names (pretrained encoders)."""
    from galclip.data.format import MANIFEST, sha256_file

    manifest = Path(data_dir) / MANIFEST
    inputs = {"data": sha256_file(manifest) if manifest.is_file() else "missing"}
    for path in stage.input_files(cfg):
        inputs[str(path)] = sha256_file(Path(path))
    return inputs


def check_run_folder(out: Path, cfg: TrainConfig, inputs: Mapping[str, str], stage: str = "train"
                     ) -> tuple[bool, Path | None, ResumeState]:
    """Apply the resume policy: (finished already, checkpoint to resume from or None, the run's
    resume state: :class:`galclip.resume.ResumeState`, the one every stage uses)."""
    saved = out / "config.yaml"
    state = ResumeState.open(out / STATE, stage, inputs, error=ConfigError,
                             hint="the run was trained on other inputs; use a new --out folder")
    if not saved.exists():
        return False, None, state
    old = read_yaml(saved)
    changed = config_diff(old, cfg.to_dict())
    refused = [".".join(k) for k in changed if k not in RESUMABLE]
    if refused:
        raise ConfigError(f"{saved}: the run in {out} was started with a different config "
                          f"({', '.join(refused)}); only trainer.max_epochs and trainer.max_steps "
                          f"may change on resume: use a new --out folder or the same settings")
    if state.complete and not changed:
        return True, None, state
    return False, (out / LAST if (out / LAST).exists() else None), state


# ----------------------------------------------------------------------------- Trainer
def precision(trainer: TrainerConfig) -> str:
    """The precision policy (:mod:`galclip.precision`): ``auto`` is bf16 autocast on a GPU or CPU
    that computes in bf16 natively, fp32 otherwise; any other setting goes to Lightning as given."""
    if trainer.precision != "auto":
        return str(trainer.precision)
    import torch

    from galclip.precision import resolve

    gpu = trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return resolve("auto", "cuda" if gpu else "cpu")


def loggers(out: Path) -> list:
    """CSV logs (and TensorBoard's, if installed); each attempt gets its own ``version_N``."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    found = [CSVLogger(out, name="logs")]
    try:
        import tensorboard  # noqa: F401
        found.append(TensorBoardLogger(out, name="tensorboard"))
    except ImportError:
        pass
    return found


def build_trainer(cfg: TrainConfig, out: Path, stage: Stage, callbacks: Sequence[Any] = ()):
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar

    from galclip.train import resumable as R

    tr = cfg.trainer
    exact = [R.ObjectiveModes(), R.StepSeeds(int(cfg.seed)), R.LoaderPosition(),
             R.SaveLast(out / LAST, int(tr.checkpoint_every_n_steps))]  # exact resume
    bar = [TQDMProgressBar(refresh_rate=max(1, int(tr.log_every_n_steps)))] if tr.progress_bar else []
    return L.Trainer(
        default_root_dir=out, max_epochs=int(tr.max_epochs), max_steps=int(tr.max_steps),
        accelerator=tr.accelerator, devices=tr.devices, num_nodes=tr.num_nodes,
        strategy=tr.strategy, precision=precision(tr),
        gradient_clip_val=float(cfg.optim.grad_clip) or None,
        log_every_n_steps=int(tr.log_every_n_steps), num_sanity_val_steps=0,
        logger=loggers(out), callbacks=[*exact, *callbacks, *bar],
        plugins=[R.AtomicCheckpointIO()],
        enable_progress_bar=bool(tr.progress_bar), enable_model_summary=False,
        use_distributed_sampler=stage.distributed_sampler)


def _export_callback(stage: Stage, path: Path):
    import lightning as L

    class ExportWeights(L.Callback):
        """Write the stage's weights after each validation and at the end (rank zero)."""

        start_step = 0

        def on_train_start(self, trainer, module) -> None:
            self.start_step = trainer.global_step  # > 0 when the run was resumed

        def _export(self, trainer, module) -> None:
            if trainer.is_global_zero:
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                           if k.startswith("val/")}
                stage.export(module, path, {
                    "stage": stage.name, "epoch": trainer.current_epoch,
                    "global_step": trainer.global_step, "resumed_from_step": self.start_step,
                    "metrics": metrics, "run_config": module.cfg.to_dict()})

        def on_validation_end(self, trainer, module) -> None:
            if not trainer.sanity_checking:
                self._export(trainer, module)

        def on_train_end(self, trainer, module) -> None:
            self._export(trainer, module)

    return ExportWeights()


# ----------------------------------------------------------------------------- runs
def fit_stage(stage: Stage, cfg: TrainConfig, data_dir: str | Path, out: Path,
              callbacks: Sequence[Any] = (), resume: Path | None = None):
    """Seed, build the objective's module and the stage's loaders, fit (from ``resume``), export.
    Returns the finished Trainer (``trainer.state.finished`` is False if it was interrupted)."""
    import lightning as L

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = build_module(cfg)
    train_loader, val_loader = stage.loaders(cfg, Path(data_dir))
    trainer = build_trainer(cfg, out, stage, [_export_callback(stage, out / stage.weights), *callbacks])
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None)
    if trainer.state.finished:
        trainer.save_checkpoint(out / LAST)  # the final state, so a run can be extended exactly
    return trainer


def train(stage: str, data_dir: str | Path, out_dir: str | Path,
          config: str | Path | TrainConfig | None = None, overrides: Sequence[str] = (),
          callbacks: Sequence[Any] = ()) -> Path:
    """Run (resume, or skip when finished) one training stage in ``out_dir`` by the resume
    policy; returns the path of its exported weights. The one way to start any stage.

    ``config``: a preset name, a YAML file or None (the stage's defaults), resolved with
    ``overrides`` by :func:`~galclip.train.schema.train_config`; or a config resolved already
    (a :class:`~galclip.train.schema.TrainConfig` of this stage), then without overrides."""
    if isinstance(config, TrainConfig):
        if overrides:
            raise ValueError("overrides apply to a preset or a file, not to a resolved config")
        if config.stage != stage:
            raise ValueError(f"a resolved {config.stage} config cannot run the {stage} stage")
        cfg = config
    else:
        cfg = train_config(stage, config, overrides)
    return _run(get_stage(stage), cfg, data_dir, out_dir, callbacks)


def _run(stage: Stage, cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path,
         callbacks: Sequence[Any] = ()) -> Path:
    out = Path(out_dir)
    inputs = run_inputs(stage, cfg, data_dir)
    finished, resume, state = check_run_folder(out, cfg, inputs, stage.name)
    if finished and (out / stage.weights).exists():
        return out / stage.weights
    if finished:  # the weights were removed: export them again from the final checkpoint
        resume = out / LAST if (out / LAST).exists() else None
    save_config(cfg.to_dict(), out / "config.yaml")
    state.complete, state.result = False, None
    state.save()
    trainer = fit_stage(stage, cfg, data_dir, out, callbacks, resume)
    if trainer.is_global_zero and trainer.state.finished:
        state.mark_complete({"global_step": trainer.global_step})
    return out / stage.weights
