"""Search a catalog: ``Catalog(dir).search(id=..., to="spectrum", k=10, where="redshift > 0.3")``.

A query is a catalog object (its image or spectrum embedding), an image cutout or spectrum
(embedded on the fly with the catalog's own model, after checking the checkpoint still has
the sha256 the catalog was made with), or a vector. Results come from the target modality's
index: image->image and spectrum->spectrum, or across modalities (image->spectrum,
spectrum->image), ranked by cosine similarity.

Metadata filters never cost results: the index is asked for matches inside the filtered set
only (a FAISS ID selector; exact for a flat index, with the approximate index's effort raised in
proportion to the filter's selectivity); an approximate index's filtered search is exact over
the subset when it holds at most ``SUBSET_EXACT`` vectors, and falls back to that if the index
returns fewer than k.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galclip.modalities import NAMES as MODALITIES
from galclip.modalities import get as get_modality
from galclip.search.catalog import (
    CatalogError,
    embedding_column,
    file_sha256,
    read_catalog_manifest,
    read_catalog_table,
)
from galclip.search.filters import apply_where, parse_where
from galclip.search.index import LoadedIndex, build_index, load_index, normalized

K = 10                    # neighbours returned when the caller does not say
CONE_RADIUS_ARCSEC = 60.0  # default radius of a cone search
SUBSET_EXACT = 2048  # an approximate index searches filtered sets up to this size exactly
CHUNK = 65_536


@dataclass
class SearchResult:
    """Neighbours of one query, best first; ``query`` says what was asked."""

    query: dict[str, Any]
    neighbours: list[dict[str, Any]] = field(default_factory=list)

    @property
    def redshift(self) -> dict[str, Any]:
        """The query's own redshift (when known) beside the neighbours' redshift spread."""
        from galclip.search.results import redshift_summary

        return redshift_summary(self.query.get("redshift"), self.neighbours)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "neighbours": self.neighbours, "redshift": self.redshift}

    def write(self, path: str | Path) -> Path:
        """The neighbours table as .csv, .parquet or .ecsv (by the suffix)."""
        from galclip.search.results import write_table

        return write_table(self.neighbours, path, self.query)

    def to_text(self, columns: Sequence[str] = ("object_id", "ra", "dec", "redshift")) -> str:
        """A plain-text table: rank, similarity (or separation, for a cone) and ``columns``."""
        key = "sep_arcsec" if "cone" in self.query else "score"
        head = ["rank", key, *columns]
        rows = [[str(n["rank"]), f"{n[key]:.4f}", *(_fmt(n.get(c), c) for c in columns)]
                for n in self.neighbours]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = "  ".join(f"{{:>{w}}}" for w in widths)
        return "\n".join(fmt.format(*r) for r in [head, *rows])


def _fmt(v: Any, column: str = "") -> str:
    if isinstance(v, float) and column in ("ra", "dec"):
        return f"{v:.6f}"  # 0.0036 arcsec: positions are never rounded to a few digits
    if isinstance(v, float):
        return f"{v:.5g}"
    return "" if v is None else str(v)


class Catalog:
    """An embedding catalog opened for search. ``model`` overrides loading the checkpoint."""

    def __init__(self, path: str | Path, model=None, device: str | None = None):
        self.path = Path(path)
        self.manifest = read_catalog_manifest(self.path)
        self.modalities: list[str] = list(self.manifest["modalities"])
        meta_cols = [c for c in self.manifest["columns"] if not c.endswith("_embedding")]
        table = read_catalog_table(self.path, meta_cols)
        self.meta: dict[str, np.ndarray] = {c: table.column(c).to_numpy(zero_copy_only=False)
                                            for c in meta_cols}
        self.n_rows = int(self.manifest["n_rows"])
        ids = self.meta["object_id"]
        self._order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._order]
        self._indexes: dict[str, LoadedIndex] = {}
        self._row_pos: dict[str, np.ndarray] = {}
        self._model, self._device = model, device

    def __len__(self) -> int:
        return self.n_rows

    # ------------------------------------------------------------------ rows and metadata
    def row_of(self, object_id: int) -> int:
        """Catalog row of an object id (KeyError if absent)."""
        i = int(np.searchsorted(self._sorted_ids, object_id))
        if i >= len(self._sorted_ids) or self._sorted_ids[i] != object_id:
            raise KeyError(f"object_id {object_id} is not in catalog {self.path}")
        return int(self._order[i])

    def properties(self, row: int) -> dict[str, Any]:
        """Metadata of one row as plain Python values (NaN -> None), plus modality presence."""
        return self.rows_properties([row])[0]

    def rows_properties(self, rows) -> list[dict[str, Any]]:
        """:meth:`properties` of several rows, a column at a time (a search's k neighbours:
        one numpy gather and ``tolist`` per column instead of a conversion per value)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = {c: _py_list(v[rows]) for c, v in self.meta.items()}
        for m in self.modalities:
            self.index(m)
            cols[f"has_{m}"] = (self._row_pos[m][rows] >= 0).tolist()
        return [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]

    def filterable_columns(self) -> list[str]:
        return [c for c, v in self.meta.items() if v.dtype.kind in "biuf"]

    # ------------------------------------------------------------------ indexes
    def index(self, modality: str) -> LoadedIndex:
        """The saved index of a modality (built in memory, exact, if none was saved)."""
        embedding_column(modality)
        if modality not in self.modalities:
            raise CatalogError(f"catalog {self.path} has no {modality} embeddings")
        if modality not in self._indexes:
            try:
                self._indexes[modality] = load_index(self.path, modality)
            except FileNotFoundError:
                print(f"galclip: no saved {modality} index in {self.path}; searching exactly "
                      f"(run `galclip index {self.path}` to save one)", file=sys.stderr)
                self._indexes[modality] = build_index(self.path, modality, kind="flat",
                                                      save=False, verbose=False)
            pos = np.full(self.n_rows, -1, dtype=np.int64)
            rows = self._indexes[modality].rows
            pos[rows] = np.arange(len(rows))
            self._row_pos[modality] = pos
        return self._indexes[modality]

    def _position(self, modality: str, row: int) -> int:
        self.index(modality)
        return int(self._row_pos[modality][row])

    def embedding(self, object_id: int, modality: str) -> np.ndarray:
        """The stored (E,) embedding of an object (CatalogError if it lacks that modality)."""
        pos = self._position(modality, self.row_of(object_id))
        if pos < 0:
            raise CatalogError(f"object_id {object_id} has no {modality} embedding in {self.path}")
        return self.index(modality).vector(pos)

    # ------------------------------------------------------------------ the model
    @property
    def model(self):
        """The catalog's model, loaded from its checkpoint after checking its sha256."""
        if self._model is None:
            import galclip

            info = self.manifest["model"]
            if not info.get("path"):
                raise FileNotFoundError(f"{self.path / 'manifest.json'}: the catalog records no "
                                        f"model checkpoint (field 'model.path'), so queries given "
                                        f"as files cannot be embedded")
            path = Path(info["path"])
            if not path.exists():
                raise FileNotFoundError(f"{path}: the catalog's model checkpoint is missing "
                                        f"(field 'model.path' of {self.path / 'manifest.json'})")
            if file_sha256(path) != info["sha256"]:
                raise CatalogError(f"{self.path / 'manifest.json'}: stale catalog: checkpoint "
                                   f"{path} changed since the catalog was made (sha256 differs); "
                                   f"rerun galclip embed")
            self._model = galclip.load_model(path)
        return self._model

    def embed(self, modality: str, *arrays: np.ndarray) -> np.ndarray:
        """One object's inputs for ``modality`` (its registry columns, unbatched: a (3, H, W)
        nanomaggy cutout, or (7781,) flux and ivar) -> (E,) unit embedding with the catalog's
        model."""
        import torch

        m = get_modality(modality)
        model = self.model
        if model.training:  # once: eval() walks every submodule (~3 ms for the tiny CLIP)
            model.eval()

        def as_tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x, np.float32)[None], device=self._device)

        with torch.inference_mode():
            z = m.encode(model, dict(zip(m.inputs, arrays, strict=True)), as_tensor)
        return normalized(z.float().cpu().numpy())[0]

    # ------------------------------------------------------------------ search
    def search(self, *, id: int | None = None, image: np.ndarray | str | Path | None = None,
               spectrum: tuple[np.ndarray, np.ndarray] | str | Path | None = None,
               vector: np.ndarray | None = None, from_: str | None = None, to: str | None = None,
               k: int = K, where: str | None = None, exclude_self: bool | None = None,
               targetid: int | None = None, row: int | None = None) -> SearchResult:
        """The k nearest neighbours of one query in the ``to`` modality.

        Give exactly one of ``id`` (with ``from_``, default "image"), ``image`` (array or FITS
        path), ``spectrum`` ((flux, ivar) or FITS path), ``vector`` (with ``from_``). ``to``
        defaults to the query's modality; a spectrum query reports ``query["ivar_estimated"]``
        (True when the file had no ivar and it was estimated from the flux). Every query reports
        ``ood_score`` and ``unfamiliar`` (:meth:`familiarity`). ``exclude_self``
        (default: True for an id searched in its own modality) drops the query object from the
        results. ``targetid`` or ``row`` picks the fibre of a multi-fibre DESI coadd/spectra file
        (or flux table) given as ``spectrum``.
        """
        given = [x is not None for x in (id, image, spectrum, vector)]
        if sum(given) != 1:
            raise ValueError("give exactly one of id, image, spectrum, vector")
        if k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        if (targetid is not None or row is not None) and not isinstance(spectrum, (str, Path)):
            raise ValueError("targetid/row pick a fibre of a spectrum file: give spectrum=<path>")
        q, src, query, arrays = self._query_vector(id, image, spectrum, vector, from_, targetid,
                                                   row)
        query.update(self.familiarity(q, src, None if id is None else self.row_of(int(id)),
                                      spectrum=arrays))
        to = to or src
        if exclude_self is None:
            exclude_self = id is not None and to == src
        query.update({"from": src, "to": to, "k": k, "where": where})
        mask = self._filter_mask(where)
        skip = self.row_of(id) if (id is not None and exclude_self) else None
        rows, scores = self._nearest(q, to, k, mask, skip)
        out = [{"rank": i + 1, "score": s, **p} for i, (s, p) in
               enumerate(zip(scores.tolist(), self.rows_properties(rows), strict=True))]
        return SearchResult(query, out)

    def familiarity(self, vector: np.ndarray, modality: str, self_row: int | None = None,
                    spectrum: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
        """``ood_score`` (share of held-out catalog galaxies whose k-th neighbour is nearer than
        this query's) and ``unfamiliar`` (beyond what 99 % of them reach) of a query vector:
        :mod:`galclip.search.ood`; with the query's ``spectrum`` (flux, ivar) its neighbours'
        redshift is also checked against a template fit (``ood_check``). None where the catalog
        cannot calibrate it (no held-out rows with that modality)."""
        from galclip.search.ood import query_ood

        if modality not in self.modalities:
            return {"ood_score": None, "unfamiliar": None}
        try:
            return query_ood(self, modality, vector, self_row, spectrum)
        except ValueError as e:
            print(f"galclip: no OOD score: {e}", file=sys.stderr)
            return {"ood_score": None, "unfamiliar": None}

    def cone(self, ra: float, dec: float, radius: float, k: int | None = None,
             where: str | None = None) -> SearchResult:
        """Objects within ``radius`` arcsec of (ra, dec) degrees, nearest first (at most k)."""
        from galclip.search.cone import cone_rows

        if "ra" not in self.meta or "dec" not in self.meta:
            raise CatalogError(f"catalog {self.path} has no ra/dec columns for a cone search")
        if k is not None and k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        rows, sep = cone_rows(ra, dec, radius, self.meta["ra"], self.meta["dec"])
        mask = self._filter_mask(where)
        if mask is not None:
            rows, sep = rows[mask[rows]], sep[mask[rows]]
        rows, sep = rows[:k], sep[:k]
        query = {"cone": {"ra": float(ra), "dec": float(dec), "radius_arcsec": float(radius)},
                 "k": k, "where": where}
        out = [{"rank": i + 1, "sep_arcsec": d, **p} for i, (d, p) in
               enumerate(zip(np.asarray(sep, float).tolist(), self.rows_properties(rows),
                             strict=True))]
        return SearchResult(query, out)

    def _query_vector(self, id, image, spectrum, vector, from_, targetid=None, row=None):
        if id is not None:
            src = from_ or "image"
            z = _py(self.meta["redshift"][self.row_of(int(id))]) if "redshift" in self.meta else None
            return self.embedding(int(id), src), src, {"id": int(id), "redshift": z}, None
        if image is not None:
            from galclip.search.queryfile import read_image_fits

            arr = image if isinstance(image, np.ndarray) else read_image_fits(image, str(image))
            return self.embed("image", arr), "image", {"file": _name(image)}, None
        if spectrum is not None:
            arrays = _spectrum_arrays(spectrum, targetid, row)
            pick = {k: v for k, v in (("targetid", targetid), ("row", row)) if v is not None}
            return self.embed("spectrum", *arrays), "spectrum", {
                "file": _name(spectrum), **pick,
                "ivar_estimated": bool(getattr(arrays, "ivar_estimated", False))}, tuple(arrays)
        if from_ not in MODALITIES:
            raise ValueError(f"a vector query needs from_ in {MODALITIES}")
        return normalized(np.asarray(vector, np.float32)[None])[0], from_, {"vector": True}, None

    def _filter_mask(self, where: str | None) -> np.ndarray | None:
        clauses = parse_where(where, {c: None for c in self.filterable_columns()})
        return apply_where(clauses, self.meta, self.n_rows) if clauses else None

    def _nearest(self, q: np.ndarray, to: str, k: int, mask: np.ndarray | None,
                 skip: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Catalog rows and scores of the k best matches among allowed rows."""
        loaded = self.index(to)
        skip_pos = int(self._row_pos[to][skip]) if skip is not None else -1
        q = q[None].astype(np.float32)
        with _one_thread():
            if mask is None:  # unfiltered: ask for one more and drop the query object itself
                s, p = loaded.index.search(q, int(min(k + (skip_pos >= 0), len(loaded.rows))))
                keep = (p[0] >= 0) & (p[0] != skip_pos)
                s, p = s[:, keep][:, :k], p[:, keep][:, :k]
            else:
                allowed = mask[loaded.rows]  # (M,) over index positions
                if skip_pos >= 0:
                    allowed[skip_pos] = False
                s, p = _filtered_search(loaded, q, allowed, k)
        keep = p[0] >= 0
        return loaded.rows[p[0][keep]], s[0][keep]


_CONTROLLER: list = []


def _one_thread():
    """One query is fastest on one thread: OpenMP/BLAS thread teams cost more than they save
    (measured 40 ms vs 2 ms for a flat search of 20k vectors on a busy 2-core machine)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    if not _CONTROLLER:  # scanning the loaded libraries costs ~4 ms: do it once
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1)


def _exact_subset(index, q: np.ndarray, positions: np.ndarray, k: int):
    """Exact top-k of q over the stored vectors at ``positions`` (in chunks)."""
    best_s, best_p = np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64)
    for lo in range(0, len(positions), CHUNK):
        pos = positions[lo:lo + CHUNK]
        scores = index.reconstruct_batch(pos) @ q[0]  # (n,)
        s = np.concatenate([best_s[0], scores])
        p = np.concatenate([best_p[0], pos])
        top = np.argsort(-s, kind="stable")[:k]
        best_s, best_p = s[top][None], p[top][None]
    return best_s, best_p


def _filtered_search(loaded: LoadedIndex, q: np.ndarray, allowed: np.ndarray, k: int):
    """Top-k among index positions where ``allowed`` is True.

    A flat index searches the allowed vectors exactly (FAISS ID selector). An approximate index
    searches exactly when at most ``SUBSET_EXACT`` vectors are allowed; otherwise it searches
    with the selector and its effort (nprobe / efSearch) raised in proportion to how selective
    the filter is, and falls back to exact search if it reaches fewer than k allowed vectors.
    """
    import faiss

    if hasattr(loaded.index, "search_allowed"):  # IVF-PQ in parts (galclip.search.ivfpq)
        return loaded.index.search_allowed(q, k, allowed)
    n_allowed = int(allowed.sum())
    k = min(k, n_allowed)
    if k == 0:
        return np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64)
    if loaded.kind != "flat" and n_allowed <= SUBSET_EXACT:
        return _exact_subset(loaded.index, q, np.flatnonzero(allowed), k)
    bits = np.packbits(allowed, bitorder="little")  # must outlive the search
    sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
    widen = len(allowed) / n_allowed
    if loaded.kind == "flat":
        params = faiss.SearchParameters(sel=sel)
    elif loaded.kind == "ivf":
        nprobe = int(min(loaded.index.nlist, np.ceil(loaded.index.nprobe * widen)))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
    else:
        ef = int(min(4096, max(k, np.ceil(loaded.index.hnsw.efSearch * widen))))
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
    s, p = loaded.index.search(q, k, params=params)
    if loaded.kind != "flat" and (p[0] < 0).any():
        return _exact_subset(loaded.index, q, np.flatnonzero(allowed), k)
    return s, p


def _spectrum_arrays(spectrum, targetid, row):
    """(flux, ivar) of a spectrum query: the tuple given, or read from the file (the query dict
    reports an estimated ivar, so the reader's warning is not repeated)."""
    import warnings

    from galclip.search.queryfile import IvarEstimatedWarning, read_spectrum_fits

    if isinstance(spectrum, tuple):
        return spectrum
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IvarEstimatedWarning)
        return read_spectrum_fits(spectrum, str(spectrum), targetid=targetid, row=row)


def _name(x: Any) -> str:
    return Path(x).name if isinstance(x, (str, Path)) else "array"


def _py_list(values: np.ndarray) -> list:
    """A column's values as plain Python values, non-finite floats as None (see :func:`_py`)."""
    out = values.tolist()
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        out = [None if not np.isfinite(v) else v for v in out]
    return out


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v
