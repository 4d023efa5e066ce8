"""What the explorer shows beside a search: predicted redshift densities and unusual galaxies.

``galclip serve CATALOG --predictions P.parquet --outliers O.parquet`` loads the output of
``galclip predict`` (on this catalog's galaxies, made with this catalog's model) and of
``galclip outliers`` (on this catalog). The explorer then draws, for a galaxy that has a
prediction, its redshift density with the 68 % interval and the catalogue redshift marked, and
lists the most unusual galaxies by a chosen score. Both files are read once, whole (a
prediction file holds one density per galaxy: 1.2 kB each at 300 bins).

Routes: ``GET /api/annotations`` (what is loaded), ``GET /api/objects/{id}/redshift_pdf``,
``GET /api/unusual?by=mismatch_score&n=24``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

UNUSUAL_N = 24
UNUSUAL_MAX = 500


@dataclass
class Predictions:
    """Predicted redshifts of catalog galaxies, sorted by object_id for look-up."""

    ids: np.ndarray
    columns: dict[str, np.ndarray]
    pdf: np.ndarray | None
    grid: list[float] | None
    meta: dict[str, Any]

    def row(self, object_id: int) -> int | None:
        i = int(np.searchsorted(self.ids, object_id))
        return i if i < len(self.ids) and self.ids[i] == object_id else None


def _parquet(path: Path, what: str):
    import pyarrow.parquet as pq

    if path.suffix.lower() != ".parquet":
        raise ValueError(f"{what} {path}: the explorer reads the .parquet output")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    return pq.read_table(path)


def load_predictions(path: str | Path, cat) -> Predictions:
    """Read a ``galclip predict`` Parquet file made with the catalog's model."""
    from galclip.eval.predict import read_prediction_metadata

    path = Path(path)
    table = _parquet(path, "--predictions")
    meta = read_prediction_metadata(path)
    if meta.get("model_sha256") != cat.manifest["model"]["sha256"]:
        raise ValueError(f"--predictions {path}: field 'model_sha256' is "
                         f"{str(meta.get('model_sha256'))[:12]}..., but the catalog's model is "
                         f"{cat.manifest['model']['sha256'][:12]}...: predict with this model")
    if "redshift" not in table.column_names:
        raise ValueError(f"--predictions {path}: no 'redshift' column (predict --properties "
                         f"redshift)")
    ids = table.column("object_id").to_numpy()
    order = np.argsort(ids, kind="stable")
    cols = {c: table.column(c).to_numpy()[order]
            for c in ("redshift", "redshift_lo68", "redshift_hi68", "redshift_lo95",
                      "redshift_hi95", "n_neighbours", "neighbour_distance")}
    pdf = None
    if "redshift_pdf" in table.column_names:
        col = table.column("redshift_pdf").combine_chunks()
        pdf = col.flatten().to_numpy().reshape(len(col), col.type.list_size)[order]
    grid = (meta.get("redshift_pdf_grid") or {}).get("centres")
    return Predictions(ids[order], cols, pdf, grid, meta)


def load_outliers(path: str | Path, cat) -> dict[str, np.ndarray]:
    """Read a ``galclip outliers`` Parquet file of this catalog's galaxies."""
    from galclip.eval.outliers import SCORES

    path = Path(path)
    table = _parquet(path, "--outliers")
    missing = [c for c in ("object_id", *SCORES) if c not in table.column_names]
    if missing:
        raise ValueError(f"--outliers {path}: column(s) {missing} missing: not a galclip "
                         f"outliers file")
    out = {c: table.column(c).to_numpy() for c in ("object_id", *SCORES)}
    try:
        for oid in out["object_id"][:1000]:
            cat.row_of(int(oid))
    except KeyError as e:
        raise ValueError(f"--outliers {path}: {e.args[0]}: scores of another catalog") from None
    return out


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def redshift_pdf(pred: Predictions, cat, object_id: int) -> dict[str, Any] | None:
    """The explorer's view of one galaxy's prediction (None if it has none)."""
    i = pred.row(object_id)
    if i is None:
        return None
    z_cat = cat.meta["redshift"][cat.row_of(object_id)] if "redshift" in cat.meta else None
    out = {c: _num(v[i]) for c, v in pred.columns.items()}
    out.update(object_id=object_id, catalog_redshift=None if z_cat is None else _num(z_cat),
               grid=pred.grid, pdf=None if pred.pdf is None else
               np.round(pred.pdf[i].astype(float), 5).tolist(), **{"from": pred.meta.get("from")})
    return out


def unusual(scores: dict[str, np.ndarray], cat, by: str, n: int) -> dict[str, Any]:
    """The ``n`` galaxies with the largest ``by`` score, with their properties."""
    v = scores[by]
    ok = np.flatnonzero(np.isfinite(v))
    top = ok[np.argsort(-v[ok], kind="stable")][:n]
    rows = [cat.row_of(int(i)) for i in scores["object_id"][top]]
    props = cat.rows_properties(rows)
    for p, j in zip(props, top, strict=True):
        p.update({c: _num(scores[c][j]) for c in scores if c != "object_id"})
    return {"by": by, "n": len(props), "galaxies": props}


def add_routes(app, cat, predictions: Predictions | None,
               outliers: dict[str, np.ndarray] | None) -> None:
    from fastapi import HTTPException, Query

    from galclip.eval.outliers import SCORES

    @app.get("/api/annotations", summary="Predictions and outlier scores the explorer holds")
    def annotations() -> dict:
        return {"predictions": predictions is not None, "outliers": outliers is not None,
                "scores": list(SCORES) if outliers is not None else [],
                "prediction_from": predictions.meta.get("from") if predictions else None}

    @app.get("/api/objects/{object_id}/redshift_pdf",
             summary="Predicted redshift density of one object (galclip predict)")
    def object_pdf(object_id: int) -> dict:
        if predictions is None:
            raise HTTPException(404, "no predictions loaded (galclip serve --predictions)")
        out = redshift_pdf(predictions, cat, object_id)
        if out is None:
            raise HTTPException(404, f"object_id {object_id} has no prediction")
        return out

    @app.get("/api/unusual", summary="The most unusual galaxies by an outlier score")
    def unusual_route(by: str = "mismatch_score",
                      n: int = Query(UNUSUAL_N, ge=1, le=UNUSUAL_MAX)) -> dict:
        if outliers is None:
            raise HTTPException(404, "no outlier scores loaded (galclip serve --outliers)")
        if by not in SCORES:
            raise HTTPException(422, f"by must be one of {list(SCORES)}")
        return unusual(outliers, cat, by, n)
