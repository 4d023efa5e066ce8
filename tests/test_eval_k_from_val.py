"""The zero-shot k chosen on the validation split: the known best k, and no test labels in it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from galclip.eval import tasks
from galclip.eval.knn import choose_k, k_grid, knn_predict, predict_per_property_k

BLOCK = 16  # training galaxies per block of the synthetic embedding below


def blocks(n_blocks: int, seed: int, noise: float = 1.0):
    """A 1-D embedding where the best k is BLOCK by construction.

    Training points sit at x = 0, 1, 2, ... in blocks of BLOCK; a block's label is +10 or -10,
    alternating from block to block, plus Gaussian noise. Queries sit at a block's centre with
    its label plus noise. Their BLOCK nearest neighbours (distances 0.5 ... 7.5, in pairs) are
    exactly their block: fewer average fewer noisy labels (inverse-distance weighted variance
    0.31, 0.21, 0.15 σ² at k = 4, 8, 16), more reach into the two neighbouring blocks of the
    opposite sign (at k = 32 a bias of about 2.9 in the mean, at σ = 1).
    """
    rng = np.random.default_rng(seed)
    mu = 10.0 * (-1.0) ** np.arange(n_blocks)  # (B,)
    x_train = np.arange(n_blocks * BLOCK, dtype=np.float64)[:, None]  # (B*BLOCK, 1)
    y_train = np.repeat(mu, BLOCK) + rng.normal(0, noise, n_blocks * BLOCK)
    x_query = (np.arange(n_blocks) * BLOCK + (BLOCK - 1) / 2)[:, None]  # (B, 1) block centres
    y_query = mu + rng.normal(0, noise, n_blocks)
    return x_train, y_train[:, None], x_query, y_query[:, None]


def test_choose_k_picks_the_block_size_where_fewer_are_noisy_and_more_are_biased():
    x, y, xv, yv = blocks(400, seed=0)
    choice = choose_k(x, y, xv, yv, [4, 8, 16, 32, 64])
    assert choice.k == (BLOCK,)
    r2 = dict(zip(choice.grid, choice.val_r2[:, 0], strict=True))
    assert r2[4] < r2[8] < r2[16] and r2[16] > r2[32] > r2[64]  # noisy below, biased above


def test_choose_k_per_property_and_the_grid_is_capped_by_the_pool():
    x, y, xv, yv = blocks(400, seed=1)
    choice = choose_k(x, np.hstack([y, 3 * y]), xv, np.hstack([yv, 3 * yv]), [4, 16, 64])
    assert choice.k == (BLOCK, BLOCK) and choice.val_r2.shape == (3, 2)
    assert k_grid([4, 64, 128, 500], 100) == (4, 64, 100)
    with pytest.raises(ValueError, match="positive k"):
        k_grid([0, 4], 100)
    unknown = np.full_like(yv, np.nan)  # no finite validation R²: the largest (smoothest) k
    assert choose_k(x, y, xv, unknown, [4, 64, 16]).k == (64,)


def test_per_property_k_predicts_each_column_as_that_k_does():
    x, y, xv, _ = blocks(50, seed=2)
    y2 = np.hstack([y, -y + 1.0])
    pred = predict_per_property_k(x, y2, xv, (4, 32))
    np.testing.assert_array_equal(pred[:, 0], knn_predict(x, y2, xv, 4)[:, 0])
    np.testing.assert_array_equal(pred[:, 1], knn_predict(x, y2, xv, 32)[:, 1])


def embeddings(seed: int):
    """Image and spectrum 'embeddings' of a block problem (two properties), three splits."""
    out = []
    for part in range(3):
        x, y, xq, yq = blocks(120, seed=10 * seed + part)
        x, y = (x, y) if part == 0 else (xq + 0.1 * part, yq)
        emb = {"image": np.hstack([x, 2 * x]), "spectrum": np.hstack([x, 2 * x + 0.01])}
        out.append((emb, np.hstack([y, 2 * y])))
    return out


def test_the_choice_never_sees_the_test_labels():
    (train, y_tr), (val, y_val), (test, y_te) = embeddings(0)
    names, grid = ["redshift", "log_mstar"], [2, 4, 8, 16, 32, 64]
    res, preds = tasks.knn_val_results(train, y_tr, val, y_val, test, y_te, names, grid)
    perm = np.random.default_rng(3).permutation(len(y_te))
    res2, preds2 = tasks.knn_val_results(train, y_tr, val, y_val, test, y_te[perm], names, grid)
    assert [r["k"] for r in res] == [{"redshift": BLOCK, "log_mstar": BLOCK}] * 3
    assert [r["k"] for r in res] == [r["k"] for r in res2]
    assert [r["k_selection"] for r in res] == [r["k_selection"] for r in res2]
    for rid in preds:
        np.testing.assert_array_equal(preds[rid], preds2[rid])  # test labels only score
    # the validation labels do decide: shuffled, they carry no signal and the choice moves
    shuffled = y_val[np.random.default_rng(4).permutation(len(y_val))]
    res3, _ = tasks.knn_val_results(train, y_tr, val, shuffled, test, y_te, names, grid)
    assert [r["k"] for r in res3] != [r["k"] for r in res]


def test_k_from_val_rows_record_the_choice_and_match_the_fixed_k_rows_at_that_k():
    (train, y_tr), (val, y_val), (test, y_te) = embeddings(1)
    names = ["redshift", "log_mstar"]
    res, preds = tasks.knn_val_results(train, y_tr, val, y_val, test, y_te, names, [16])
    fixed, fixed_preds = tasks.knn_results(train, y_tr, test, y_te, names, k=16)
    assert [r["source"] for r in res] == ["Image", "Spectrum", "Spectrum→Image"]
    for r, f in zip(res, fixed, strict=True):
        assert r["model"] == "galclip k-NN (k from val)" and r["type"] == "zero-shot"
        assert r["k"] == {"redshift": 16, "log_mstar": 16}
        assert r["k_selection"]["grid"] == [16] and r["k_selection"]["n"] == len(y_val)
        assert r["properties"] == f["properties"]
        np.testing.assert_array_equal(preds[r["id"]], fixed_preds[f["id"]])
        assert "redshift 16, log_mstar 16" in r["budget"]


def test_demo_summary_and_report_show_the_chosen_k_beside_the_fixed_k_row():
    from galclip.demo import summary_text
    from galclip.eval.report import tables

    (train, y_tr), (val, y_val), (test, y_te) = embeddings(2)
    names = ["redshift", "log_mstar"]
    fixed, _ = tasks.knn_results(train, y_tr, test, y_te, names, k=64)
    chosen, _ = tasks.knn_val_results(train, y_tr, val, y_val, test, y_te, names, [8, 16, 64])
    metrics = {"properties": names, "results": fixed + chosen,
               "provenance": {"config": {"knn": {"k": 64}}}}
    text = summary_text(metrics, Path("runs/demo")).splitlines()
    img64, img_val = (r["properties"]["redshift"]["r2"] for r in (fixed[0], chosen[0]))
    table = [line for line in text if "galclip k-NN" in line and "zero-shot" in line]
    assert len(table) == 3 and f"{img64:6.3f}" in table[0]  # the k = 64 rows as before, once each
    beside = next(line for line in text if line.split()[:3] == ["Image", "galclip", "k-NN"]
                  and "zero-shot" not in line)
    assert f"{img64:.3f}" in beside and f"{img_val:.3f} (k=16)" in beside
    assert any("chosen on the val split" in line for line in text)
    header, rows = tables(metrics)["k_from_val"]
    assert header[-2:] == ["chosen k", "R² (evaluation split)"] and len(rows) == 3 * len(names)
    assert rows[0][:3] == ["Image", "galclip k-NN (k from val)", "redshift"] and rows[0][-2] == "16"


def test_the_selection_rows_are_the_validation_split_and_never_the_scored_one(tiny_dataset):
    from galclip.data import open_dataset
    from galclip.data.splits import assign_splits
    from galclip.eval.evaluate import _select_notes, load_split_rows
    from galclip.eval.schema import evaluation_config

    ds = open_dataset(tiny_dataset)
    cfg = evaluation_config("cpu")
    rows = load_split_rows(ds, cfg)
    split = assign_splits(rows["labels"]["object_id"])
    assert len(rows["select"]) >= 2 and set(split[rows["select"]]) == {"val"}
    assert _select_notes(cfg, len(rows["select"])) == []
    scored_val = evaluation_config("cpu", ["data.test_split=val"])  # --split val
    rows = load_split_rows(ds, scored_val)
    assert len(rows["select"]) == 0 and "knn.select_split" in _select_notes(scored_val, 0)[0]
    swapped = evaluation_config("cpu", ["data.test_split=val", "knn.select_split=test"])
    rows = load_split_rows(ds, swapped)
    assert set(split[rows["select"]]) == {"test"} and set(split[rows["test"]]) == {"val"}
    assert len(load_split_rows(ds, evaluation_config("cpu", ["knn.k_grid=[]"]))["select"]) == 0
