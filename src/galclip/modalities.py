"""The modalities galclip aligns, defined once: what a dataset stores for each, the flag that
says a row has it, how a GalaxyCLIP encodes it and how the explorer draws it.

Every stage reads these records instead of spelling column names itself: pretraining and
alignment pick their input columns and rows here, ``galclip embed`` and ``galclip evaluate``
embed through :meth:`Modality.encode`, the catalog names its embedding columns with
:attr:`Modality.embedding_column`, and the server draws with :meth:`Modality.draw`
(:mod:`galclip.render`).

    >>> from galclip.modalities import MODALITIES, input_columns
    >>> MODALITIES["spectrum"].inputs
    ('spectrum_flux', 'spectrum_ivar')
    >>> input_columns(["image"])
    ['object_id', 'image']

Array layouts follow :mod:`galclip.conventions`: an image is (bands, H, W) g, r, z nanomaggies,
a spectrum is flux and ivar on the 7781-pixel DESI grid.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from galclip import render

#: The modality names, for type hints (FastAPI turns it into the allowed values).
ModalityName = Literal["image", "spectrum"]
NAMES: tuple[str, ...] = get_args(ModalityName)
ID_COLUMN = "object_id"
BATCH_SIZE = 64  # rows per batch when a model embeds a dataset (galclip embed)


@dataclass(frozen=True)
class Modality:
    """One modality: its dataset columns and how the model and the explorer use them."""

    name: str
    inputs: tuple[str, ...]   # dataset columns the encoder takes, in argument order
    presence: str             # optional bool column: False where a row lacks this modality
    encoder_method: str       # GalaxyCLIP method: encoder_method(*inputs) -> (B, E) unit vectors
    render: Callable[..., Any]  # draws it (galclip.render; numpy only)

    @property
    def embedding_column(self) -> str:
        """The catalog / embedding-dict key of this modality's CLIP embedding."""
        return f"{self.name}_embedding"

    @property
    def pooled_column(self) -> str:
        """The key of the encoder's pooled feature before the CLIP projection."""
        return f"{self.name}_pooled"

    def encode(self, model: Any, batch: Mapping[str, Any], as_tensor: Callable[[Any], Any]):
        """``model.<encoder_method>`` applied to this modality's columns of ``batch``."""
        return getattr(model, self.encoder_method)(*(as_tensor(batch[c]) for c in self.inputs))

    def draw(self, row: Mapping[str, Any], **options: Any) -> Any:
        """This modality's columns of ``row`` drawn by :attr:`render`: an (H, W, 3) uint8
        colour composite for an image, binned plot data (dict) for a spectrum."""
        return self.render(*(row[c] for c in self.inputs), **options)


MODALITIES: dict[str, Modality] = {
    "image": Modality("image", ("image",), "has_image", "encode_image",
                      render.color_composite),
    "spectrum": Modality("spectrum", ("spectrum_flux", "spectrum_ivar"), "has_spectrum",
                         "encode_spectrum", render.spectrum_plot_data),
}
assert tuple(MODALITIES) == NAMES, "ModalityName and MODALITIES must list the same names"


def get(name: str) -> Modality:
    """The modality called ``name``; a ValueError lists the known ones."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; choose from {NAMES}")
    return MODALITIES[name]


def check(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple, checked to be a non-empty subset of :data:`NAMES`."""
    names = tuple(names)
    bad = [m for m in names if m not in MODALITIES]
    if bad or not names:
        raise ValueError(f"modalities must be a non-empty subset of {NAMES}, got {names}")
    return names


def input_columns(names: Iterable[str] = NAMES, with_id: bool = True) -> list[str]:
    """The dataset columns that embedding ``names`` reads (``object_id`` first)."""
    cols = [c for m in check(names) for c in MODALITIES[m].inputs]
    return [ID_COLUMN, *cols] if with_id else cols


def presence_columns(names: Iterable[str] = NAMES) -> list[str]:
    """The presence flags of ``names`` (``has_image``, ``has_spectrum``)."""
    return [MODALITIES[m].presence for m in check(names)]


def rows_with(table: Mapping[str, Any], names: Iterable[str] = NAMES) -> np.ndarray:
    """Bool mask (N,) of the rows of ``table`` (column -> array, with ``object_id``) that hold
    every modality of ``names``; a modality without its presence column counts as present."""
    mask = np.ones(len(table[ID_COLUMN]), dtype=bool)
    for flag in presence_columns(names):
        if flag in table:
            mask &= np.asarray(table[flag]).astype(bool)
    return mask
