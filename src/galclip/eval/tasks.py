"""Downstream tasks on fixed features: zero-shot k-NN, few-shot MLP probes, morphology.

Every function takes training features and labels, and test features; test labels are used
only to score predictions, after they are made. Each returns *results*: dicts that the report
lays out as table rows, ``{"id", "source", "model", "type", "properties": {name: metrics},
"morphology": {column: metrics}}``, plus the test-set predictions keyed by result id (for the
predicted-vs-true figures).
"""
from __future__ import annotations

import numpy as np

from galclip.eval import metrics as M
from galclip.eval.knn import ZERO_SHOT_SOURCES, choose_k, knn_predict, predict_per_property_k
from galclip.eval.probes import MLPProbe, ProbeConfig

#: Physical properties predicted by default (AstroCLIP Table 2 plus redshift); simulator names.
PROPERTIES: tuple[str, ...] = ("redshift", "log_mstar", "logz_mw", "tage_mw", "log_ssfr")
MORPH_PREFIX = "morph_"
SOURCE_LABELS = {"image": "Image", "spectrum": "Spectrum", "spectrum→image": "Spectrum→Image",
                 "photometry": "Photometry", "none": "—"}


def label_matrix(labels: dict[str, np.ndarray], names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Stack scalar label columns into an (N, P) float array (P = len(names))."""
    missing = [n for n in names if n not in labels]
    if missing:
        raise KeyError(f"label column(s) {missing} not found; have {sorted(labels)}")
    return np.stack([np.asarray(labels[n], dtype=np.float64) for n in names], axis=1)


def score_properties(y_true: np.ndarray, y_pred: np.ndarray, names) -> dict[str, dict]:
    """Per-property metrics; redshift also gets the photo-z metrics (sigma_NMAD, bias, eta)."""
    return {n: (M.redshift_metrics if n == "redshift" else M.regression_metrics)(
        y_true[:, j], y_pred[:, j]) for j, n in enumerate(names)}


def make_result(source: str, model: str, type_: str, properties=None, morphology=None) -> dict:
    return {"id": f"{type_}:{model}:{source}", "source": SOURCE_LABELS.get(source, source),
            "model": model, "type": type_, "properties": properties or {},
            "morphology": morphology or {}}


def knn_results(train: dict[str, np.ndarray], y_train: np.ndarray, test: dict[str, np.ndarray],
                y_test: np.ndarray, names, k: int = 64, model: str = "galclip k-NN",
                sources=ZERO_SHOT_SOURCES, type_: str = "zero-shot"
                ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """k-NN for each (name, fit modality, query modality) in ``sources`` (zero-shot on an
    embedding; ``type_="supervised"`` when the features are catalogue inputs such as photometry)."""
    def fixed_k(fit_mod: str, query_mod: str) -> tuple[np.ndarray, dict]:
        return knn_predict(train[fit_mod], y_train, test[query_mod], k), {}

    return _knn_rows(fixed_k, train, test, y_test, names, model, sources, type_)


def knn_val_results(train: dict[str, np.ndarray], y_train: np.ndarray, val: dict[str, np.ndarray],
                    y_val: np.ndarray, test: dict[str, np.ndarray], y_test: np.ndarray, names,
                    grid, model: str = "galclip k-NN (k from val)", sources=ZERO_SHOT_SOURCES,
                    type_: str = "zero-shot", split: str = "val"
                    ) -> tuple[list[dict], dict[str, np.ndarray]]:
    """k-NN as :func:`knn_results`, with each property's k chosen from ``grid`` on the
    validation rows (``val``, ``y_val``; neighbours from the training pool) before the test rows
    are predicted; ``y_test`` only scores. Each result carries ``k`` ({property: k}) and
    ``k_selection`` (the split, its size, the grid and the validation R² of every k)."""
    def k_from_val(fit_mod: str, query_mod: str) -> tuple[np.ndarray, dict]:
        choice = choose_k(train[fit_mod], y_train, val[query_mod], y_val, grid)
        pred = predict_per_property_k(train[fit_mod], y_train, test[query_mod], choice.k)
        sel = {"split": split, "n": int(len(y_val)), "grid": list(choice.grid),
               "val_r2": {n: dict(zip(map(str, choice.grid), choice.val_r2[:, j].tolist(),
                                      strict=True)) for j, n in enumerate(names)}}
        return pred, {"k": dict(zip(names, choice.k, strict=True)), "k_selection": sel}

    usable = tuple(s for s in sources if s[2] in val)
    results, preds = _knn_rows(k_from_val, train, test, y_test, names, model, usable, type_)
    for r in results:
        r["budget"] = k_budget(r, len(y_train))
    return results, preds


def _knn_rows(predict, train: dict, test: dict, y_test: np.ndarray, names, model: str, sources,
              type_: str) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One scored result per usable source: ``predict(fit_mod, query_mod)`` gives the test
    predictions and the fields the result carries besides its scores."""
    results, preds = [], {}
    for name, fit_mod, query_mod in sources:
        if fit_mod not in train or query_mod not in test:
            continue
        pred, extra = predict(fit_mod, query_mod)
        r = make_result(name, model, type_, score_properties(y_test, pred, names))
        r.update(extra)
        results.append(r)
        preds[r["id"]] = pred
    return results, preds


def k_budget(result: dict, n_train: int) -> str:
    """Each property's k in words, where it was chosen, and the pool it searched."""
    sel = result["k_selection"]
    ks = ", ".join(f"{n} {k}" for n, k in result["k"].items())
    return (f"k per property chosen on {sel['n']} {sel['split']} galaxies from "
            f"{sel['grid']}: {ks}; neighbours among {n_train} training galaxies")


def morphology_scores(x_train: np.ndarray, morph_train: dict[str, np.ndarray], x_test: np.ndarray,
                      morph_test: dict[str, np.ndarray], cfg: ProbeConfig) -> dict[str, dict]:
    """Accuracy and macro F1 of an MLP classifier per ``morph_*`` column with >= 2 classes."""
    out = {}
    for col in sorted(morph_train):
        y = np.asarray(morph_train[col]).astype(np.int64)
        if len(np.unique(y[y >= 0])) < 2:
            continue
        pred = MLPProbe("classification", cfg).fit(x_train, y).predict(x_test)
        out[col] = M.classification_metrics(morph_test[col], pred)
    return out


def probe_results(train: dict[str, np.ndarray], y_train: np.ndarray, test: dict[str, np.ndarray],
                  y_test: np.ndarray, names, cfg: ProbeConfig, model: str = "galclip MLP",
                  type_: str = "few-shot", morph_train: dict | None = None,
                  morph_test: dict | None = None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """MLP probes (properties jointly, morphology per question) for every feature source."""
    results, preds = [], {}
    for source in train:
        pred = MLPProbe("regression", cfg).fit(train[source], y_train).predict(test[source])
        morph = (morphology_scores(train[source], morph_train, test[source], morph_test, cfg)
                 if morph_train else {})
        r = make_result(source, model, type_, score_properties(y_test, pred, names), morph)
        results.append(r)
        preds[r["id"]] = pred
    return results, preds


def majority_class_result(morph_train: dict[str, np.ndarray], morph_test: dict[str, np.ndarray]
                          ) -> dict:
    """The chance level of the morphology columns: always answer the commonest training class."""
    morph = {}
    for col in sorted(morph_train):
        y = np.asarray(morph_train[col]).astype(np.int64)
        if (y >= 0).any():
            common = np.bincount(y[y >= 0]).argmax()
            morph[col] = M.classification_metrics(morph_test[col], np.full(len(morph_test[col]), common))
    return make_result("none", "majority class", "chance", {}, morph)


def neighbour_agreement(emb: np.ndarray, y: np.ndarray, names) -> dict[str, float]:
    """R² between each galaxy's properties and those of its nearest other galaxy (cosine).

    Describes how physically coherent same-modality neighbours are (image→image,
    spectrum→spectrum retrieval); no model is fitted.
    """
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)  # (N, E) unit norm
    nn = np.empty(len(e), dtype=np.int64)
    for start in range(0, len(e), 1024):  # chunks keep memory at 1024 x N
        sim = e[start:start + 1024] @ e.T
        sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf  # not itself
        nn[start:start + len(sim)] = sim.argmax(1)
    return {n: M.r2_score(y[:, j], y[nn, j]) for j, n in enumerate(names)}
