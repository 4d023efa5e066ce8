"""The evaluation config (``galclip evaluate``): typed sections with documented defaults.

Resolved like every training stage's config, by the one resolver
(:func:`galclip.config.resolve_config`): the defaults of :class:`EvalConfig` -> a packaged preset
(``galclip/configs/eval/cpu.yaml``, ``gpu.yaml``) or a YAML file -> dotted ``key=value``
overrides (``knn.k=32``, ``baselines.image.enabled=false``); unknown keys and values of the wrong
type are ConfigErrors naming the key and the file or override. :meth:`EvalConfig.to_dict` is the
mapping written to the report folder's ``config.yaml``, ``metrics.json``'s provenance and the
report's resume state.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from galclip.config import resolve_config, typed_schema
from galclip.eval.probes import ProbeSettings
from galclip.eval.tasks import PROPERTIES

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "eval"


@dataclass
class EvalData:
    """``data``: which rows are scored, and how they are read and embedded."""

    test_split: str = "test"         # split that is scored (train is always the training set)
    max_train: int | None = None     # seeded subset of the training split (None: all rows)
    max_test: int | None = None
    batch_size: int = 64             # embedding batch size
    verify_checksums: bool = False   # hash every shard before evaluating (galclip validate does)


@dataclass
class KnnConfig:
    """``knn``: the zero-shot k-NN regression (distance-weighted, :mod:`galclip.eval.knn`).

    ``k``: the neighbours of every k-NN row; AstroCLIP's k = 64 (Parker et al. 2024, Sec. 5.1)
    keeps the comparison with the paper. ``k_grid``: the rows "k from val" (galclip's zero-shot
    sources and the photometry k-NN) choose, per property, the k of this grid (capped at the
    training pool's size) with the best R² on the ``select_split`` galaxies, neighbours from the
    training split, then score the evaluation split once: k = 64 was set for a ~160k-galaxy
    pool, and a pool of a few thousand wants fewer. An empty grid leaves those rows out; the
    selection split is capped at ``data.max_test`` rows, like the evaluation split.
    """

    k: int = 64
    k_grid: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64, 128])
    select_split: str = "val"        # where k is chosen: val, or test when val is the scored split

    def __post_init__(self) -> None:
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.k_grid):
            raise ValueError(f"key 'knn.k_grid' must list positive integers, got {self.k_grid}")
        if self.select_split not in ("val", "test"):
            raise ValueError(f"key 'knn.select_split' must be val or test, got {self.select_split!r}")


@dataclass
class LabelEfficiency:
    """``label_efficiency``: the fractions of the training labels the probes retrain on."""

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])


@dataclass
class RetrievalConfig:
    """``retrieval``: cross-modal retrieval in pools of ``pool_size`` (and over the whole set),
    and the report's galleries (``gallery_queries`` queries, their ``gallery_top`` neighbours)."""

    pool_size: int = 1000
    gallery_queries: int = 4
    gallery_top: int = 4


@dataclass
class Baseline:
    """``baselines.unaligned`` (k-NN on the encoders' pooled features) and
    ``baselines.photometry`` (an MLP on g, r, z asinh magnitudes): whether each runs."""

    enabled: bool = True


@dataclass
class ImageNetwork:
    """The image baseline's network. ``arch``: a timm CNN name (e.g. resnet18, on the stretched
    144 px crop / ``downsample``) or "conv" (the conv image encoder preset ``encoder``, with
    aperture photometry, trained with labels; ``shift`` > 0: on views with a ±shift px jittered
    crop and the symmetries of the square)."""

    enabled: bool = True
    arch: str = "resnet18"
    encoder: str = "image-conv-nano"
    downsample: int = 1
    shift: int = 0


@dataclass
class SpectrumNetwork:
    """The spectrum baseline's network. ``arch``: "conv" (the 1-D ResNet of the encoder preset
    ``encoder`` on the log-λ grid) or "conv+attention" (strided convolutions + transformer on the
    DESI grid: ``channels`` ... ``stride``); ``augment``: train the conv net on noise/lost-span
    views (:class:`galclip.eval.baselines.SpectrumAugment`) with extra noise of up to
    ``noise_max`` σ."""

    enabled: bool = True
    arch: str = "conv"
    encoder: str = "spectrum-conv-nano"
    augment: bool = False
    noise_max: float = 1.0
    channels: int = 64
    depth: int = 2
    num_heads: int = 4
    conv_layers: int = 3
    stride: int = 4


@dataclass
class Budget:
    """How a supervised baseline trains (:class:`galclip.eval.baselines.SupervisedConfig`): on
    ``max_train`` training rows (None: all), at most ``epochs`` and ``max_seconds``, early stop
    after ``patience`` flat epochs; ``lr_patience`` > 0: learning rate ×0.3 after that many flat
    epochs (reduce on plateau); ``precision``: ``auto`` (bf16 autocast where the hardware has
    bf16, as the training stages), ``32-true`` or ``bf16-mixed`` (:mod:`galclip.precision`)."""

    max_train: int | None = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 4
    lr_patience: int = 0
    max_seconds: float | None = None
    precision: str = "auto"


# the network's fields, then the budget's: dataclass fields follow the bases in reverse order
@dataclass
class ImageBaseline(Budget, ImageNetwork):
    """``baselines.image``: a supervised image network and its training budget."""


@dataclass
class SpectrumBaseline(Budget, SpectrumNetwork):
    """``baselines.spectrum``: a supervised spectrum network and its training budget."""


@dataclass
class Baselines:
    """``baselines``: what galclip is compared with, on the same split."""

    unaligned: Baseline = field(default_factory=Baseline)
    photometry: Baseline = field(default_factory=Baseline)
    image: ImageBaseline = field(default_factory=ImageBaseline)
    spectrum: SpectrumBaseline = field(default_factory=SpectrumBaseline)


@dataclass
class PlotsConfig:
    """``plots``: the report's figures."""

    embedding_map: str = "umap"      # umap or pca (umap falls back to pca if missing)
    max_points: int = 3000           # galaxies drawn in each embedding map
    dpi: int = 90


@dataclass
class EvalConfig:
    """The resolved config of one evaluation."""

    seed: int = 0
    device: str = "auto"             # auto: cuda when available, else cpu
    data: EvalData = field(default_factory=EvalData)
    properties: list[str] = field(default_factory=lambda: list(PROPERTIES))  # regression targets
    knn: KnnConfig = field(default_factory=KnnConfig)
    probe: ProbeSettings = field(default_factory=ProbeSettings)  # MLP on frozen embeddings
    label_efficiency: LabelEfficiency = field(default_factory=LabelEfficiency)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    baselines: Baselines = field(default_factory=Baselines)
    plots: PlotsConfig = field(default_factory=PlotsConfig)

    def to_dict(self) -> dict[str, Any]:
        """The nested mapping of the sections (what ``config.yaml`` holds)."""
        return asdict(self)


SCHEMA = typed_schema(EvalConfig, PRESET_DIR)


def evaluation_config(config: str | Path | None = "cpu", overrides: Sequence[str] = ()) -> EvalConfig:
    """defaults -> preset name (cpu, gpu) or YAML file -> ``key=value`` overrides."""
    return resolve_config(SCHEMA, config, overrides)
