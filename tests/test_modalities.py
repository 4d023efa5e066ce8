"""The modality registry: every stage reads one record per modality (columns, presence flag,
how to encode, how to draw) from galclip.modalities."""
from __future__ import annotations

import numpy as np
import pytest

from galclip import conventions as C
from galclip import modalities as M
from galclip.data.format import REQUIRED_COLUMNS


def test_registry_lists_each_modality_once_with_dataset_columns():
    assert M.NAMES == ("image", "spectrum") == tuple(M.MODALITIES)
    for m in M.MODALITIES.values():
        assert all(c in REQUIRED_COLUMNS for c in m.inputs), m   # the dataset format has them
        assert m.embedding_column == f"{m.name}_embedding" and m.presence == f"has_{m.name}"
    assert M.input_columns() == ["object_id", "image", "spectrum_flux", "spectrum_ivar"]
    assert M.input_columns(["spectrum"], with_id=False) == ["spectrum_flux", "spectrum_ivar"]


@pytest.mark.parametrize("bad", [[], ["radio"], ["image", "x-ray"]])
def test_unknown_or_empty_modalities_are_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="image"):
        M.check(bad)
    with pytest.raises(ValueError, match="spectrum"):
        M.input_columns(bad)


def test_rows_with_uses_presence_flags_when_the_dataset_has_them():
    table = {"object_id": np.arange(4), "has_image": np.array([1, 1, 0, 1], bool),
             "has_spectrum": np.array([1, 0, 1, 1], bool)}
    np.testing.assert_array_equal(M.rows_with(table), [True, False, False, True])
    np.testing.assert_array_equal(M.rows_with(table, ["image"]), [True, True, False, True])
    assert M.rows_with({"object_id": np.arange(3)}).all()   # a simulated set: no flags, all present


def test_encode_calls_the_model_method_with_the_registry_columns_in_order():
    calls = []

    class Model:
        def encode_image(self, x):
            calls.append(("image", x.shape))
            return x.sum()

        def encode_spectrum(self, flux, ivar):
            calls.append(("spectrum", flux[0], ivar[0]))
            return flux - ivar

    batch = {"image": np.ones((2, *C.IMAGE_SHAPE)), "spectrum_flux": np.full((2, 3), 5.0),
             "spectrum_ivar": np.full((2, 3), 2.0), "other": None}
    assert M.MODALITIES["image"].encode(Model(), batch, np.asarray) == 2 * np.prod(C.IMAGE_SHAPE)
    np.testing.assert_array_equal(M.MODALITIES["spectrum"].encode(Model(), batch, np.asarray), 3.0)
    assert calls == [("image", (2, *C.IMAGE_SHAPE)), ("spectrum", pytest.approx([5.0] * 3),
                                                      pytest.approx([2.0] * 3))]


def test_draw_renders_a_colour_composite_and_a_binned_spectrum():
    rng = np.random.default_rng(0)
    rgb = M.MODALITIES["image"].draw({"image": rng.random(C.IMAGE_SHAPE, dtype=np.float32)})
    assert rgb.shape == (C.IMAGE_SIZE, C.IMAGE_SIZE, 3) and rgb.dtype == np.uint8
    row = {"spectrum_flux": np.ones(C.N_WAVE), "spectrum_ivar": np.ones(C.N_WAVE)}
    plot = M.MODALITIES["spectrum"].draw(row, redshift=0.1, n_bins=50)
    assert len(plot["flux"]) == 50 and plot["redshift"] == 0.1
    assert any(line["name"] == "Hα" for line in plot["lines"])


def test_every_stage_reads_the_registry_not_its_own_copy():
    from galclip.models import registry
    from galclip.search import catalog
    from galclip.train import data as align_data

    assert catalog.MODALITIES == registry.MODALITIES == M.NAMES
    assert catalog.MODALITY_INPUTS == {m.name: m.inputs for m in M.MODALITIES.values()}
    assert align_data.PAIR_COLUMNS == M.input_columns()
