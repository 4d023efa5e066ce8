"""How unfamiliar a query is to a catalog: a calibrated k-th-nearest-neighbour OOD score.

Score (deep nearest neighbours, Sun et al. 2022, ICML, "Out-of-Distribution Detection with
Deep Nearest Neighbors"): the cosine distance d_k = 1 - cos from the query's embedding to its
k-th nearest catalog embedding of the same modality (:data:`K_OOD`). A raw distance means
nothing across models, so it is calibrated against the catalog's held-out galaxies: every
test-split row (:func:`galclip.data.splits.split_indices`) gets its own d_k against the rest of
the catalog (itself left out, so it is scored as a new query would be), and

    ood_score(q) = fraction of held-out rows whose d_k is smaller than d_k(q)      in [0, 1]
    unfamiliar(q) = d_k(q) > the (1 - FLAG_FRACTION) quantile of the held-out d_k

so that, by construction, :data:`FLAG_FRACTION` (1 %) of galaxies drawn like the catalog's
are flagged, and a flagged query says "unlike the training data" instead of borrowing its
neighbours' labels. The k-th (not the 1st) neighbour makes the score robust to a lone
near-duplicate.

Cost: the reference is one k-NN search per held-out row (at most :data:`MAX_REFERENCE`, a
seeded sample above that, searched as one batch), run once per catalog, index and k and stored
beside the index as ``ood-<modality>.json`` (~100 kB at most, keyed by the catalog's and the index's
identity, rebuilt when either changes; kept in memory only when the folder is read-only). A
score is then one k-NN search and a binary search in the sorted reference.

For callers that score many rows (``galclip predict``): :func:`ood_scores` takes an (N, E)
array of embeddings in one call, with ``self_rows`` naming each row's own catalog row when the
rows being scored are themselves in the catalog.
"""
from __future__ import annotations

import contextlib
import json
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

K_OOD = 10              # neighbour whose distance is the score
FLAG_FRACTION = 0.01    # share of held-out catalog galaxies flagged unfamiliar
REFERENCE_SPLIT = "test"
MAX_REFERENCE = 5_000   # held-out rows scored for the reference (a seeded sample above): the
                        # flagged share is then 1 % +- 0.14 % (binomial), at one k-NN search each
FORMAT = "galclip-ood"
VERSION = 1
_LOADED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Catalog -> {(modality, k): ref}


@dataclass(frozen=True)
class OODReference:
    """The held-out distribution of one modality of a catalog: sorted k-th-neighbour distances."""

    modality: str
    k: int
    distances: np.ndarray   # (R,) sorted cosine distances of the held-out rows
    threshold: float        # d_k above which a query is unfamiliar
    key: str                # identity of the catalog + index it was computed on

    def score(self, kth_distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ood_score (N,) in [0, 1], unfamiliar (N,) bool) of k-th-neighbour distances."""
        d = np.asarray(kth_distance, np.float64)
        frac = np.searchsorted(self.distances, d, side="left") / max(len(self.distances), 1)
        return frac, d > self.threshold

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "modality": self.modality, "k": self.k,
                "flag_fraction": FLAG_FRACTION, "split": REFERENCE_SPLIT, "key": self.key,
                "threshold": self.threshold, "distances": self.distances.tolist()}


def kth_distances(catalog, modality: str, vectors: np.ndarray, k: int = K_OOD,
                  self_rows: np.ndarray | None = None) -> np.ndarray:
    """(N,) cosine distance of each unit vector to its k-th nearest catalog vector of
    ``modality``; ``self_rows`` (catalog row per vector, -1 for none) leaves the vector's own
    row out."""
    from galclip.search.api import _one_thread

    loaded = catalog.index(modality)
    q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)   # (N, E)
    kk = int(min(k + 1, len(loaded.rows)))
    with _one_thread() if len(q) <= 8 else contextlib.nullcontext():   # a batch: all threads
        s, p = loaded.index.search(q, kk)                                  # (N, kk) best first
    return kth_of_results(s, p, loaded.rows, k, self_rows)


def kth_of_results(s: np.ndarray, p: np.ndarray, positions_rows: np.ndarray, k: int = K_OOD,
                   self_rows: np.ndarray | None = None) -> np.ndarray:
    """The k-th-neighbour cosine distances (N,) of an inner-product search's results (scores
    ``s``, index positions ``p``, best first, at least ``min(k + 1, M)`` columns of an index of
    M vectors whose position i holds catalog row ``positions_rows[i]``), as
    :func:`kth_distances`: a caller that has searched deeper anyway (``galclip predict``) reads
    the score from its own results instead of searching again."""
    kk = int(min(k + 1, len(positions_rows)))
    s, p = s[:, :kk], p[:, :kk]
    s = np.where(p >= 0, s, -np.inf)                                       # missing: no match
    col = min(k, kk) - 1
    if self_rows is not None:
        own = (p >= 0) & (positions_rows[np.maximum(p, 0)] == np.asarray(self_rows, np.int64)[:, None])
        s = -np.sort(-np.where(own, -np.inf, s), axis=1)                   # own row moved last
        col = min(k, kk - 1) - 1
    return 1.0 - s[:, max(col, 0)].astype(np.float64)


def _key(catalog, modality: str, k: int) -> str:
    import hashlib

    from galclip.search.catalog import catalog_fingerprint

    info = {c: v for c, v in catalog.index(modality).info.items() if isinstance(v, (int, str))}
    blob = json.dumps([catalog_fingerprint(catalog.manifest), modality, k, info], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def reference_path(catalog_dir: str | Path, modality: str) -> Path:
    return Path(catalog_dir) / f"ood-{modality}.json"


def build_reference(catalog, modality: str, k: int = K_OOD) -> OODReference:
    """Score the catalog's held-out rows against the rest of the catalog (no file written)."""
    from galclip.data.splits import split_indices

    loaded = catalog.index(modality)
    ids = catalog.meta["object_id"][loaded.rows]
    stored = catalog.meta["split"][loaded.rows] if "split" in catalog.meta else None
    pos = split_indices(ids, REFERENCE_SPLIT, stored=stored)
    if len(pos) == 0:
        raise ValueError(f"catalog {catalog.path} has no {REFERENCE_SPLIT}-split rows with a "
                         f"{modality} embedding to calibrate the OOD score on")
    if len(pos) > MAX_REFERENCE:
        pos = np.sort(np.random.default_rng(0).choice(pos, MAX_REFERENCE, replace=False))
    vecs = _vectors(catalog, loaded, pos)                                  # (R, E)
    d = np.sort(kth_distances(catalog, modality, vecs, k, self_rows=loaded.rows[pos]))
    thr = float(np.quantile(d, 1.0 - FLAG_FRACTION))
    return OODReference(modality, k, d, thr, _key(catalog, modality, k))


def _vectors(catalog, loaded, pos: np.ndarray) -> np.ndarray:
    """The stored vectors at index positions ``pos``: from the index, or from the catalog's
    Parquet when the index holds only compressed codes."""
    from galclip.search.catalog import read_embeddings
    from galclip.search.index import COMPRESSED, normalized

    if loaded.kind not in COMPRESSED or loaded.info.get("rerank"):
        return loaded.index.reconstruct_batch(pos.astype(np.int64))
    vectors, rows = read_embeddings(catalog.path, loaded.info["modality"])
    at = {int(r): i for i, r in enumerate(rows)}
    return normalized(vectors[[at[int(r)] for r in loaded.rows[pos]]])


def load_reference(catalog, modality: str, k: int = K_OOD) -> OODReference:
    """The stored reference of a catalog's modality, computed and stored first if missing or
    stale (kept in memory only where the catalog folder cannot be written)."""
    from galclip.storage import write_json_atomic

    cache = _LOADED.setdefault(catalog, {})
    if (modality, k) in cache:
        return cache[(modality, k)]
    path, key = reference_path(catalog.path, modality), _key(catalog, modality, k)
    ref = _read(path, key)
    if ref is None:
        ref = build_reference(catalog, modality, k)
        try:
            write_json_atomic(path, ref.to_json())
        except OSError:
            pass   # a read-only catalog: the reference lives for this process
    cache[(modality, k)] = ref
    return ref


def _read(path: Path, key: str) -> OODReference | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if obj.get("format") != FORMAT or obj.get("version") != VERSION or obj.get("key") != key:
        return None
    return OODReference(obj["modality"], int(obj["k"]), np.asarray(obj["distances"], np.float64),
                        float(obj["threshold"]), key)


def ood_scores(catalog, modality: str, vectors: np.ndarray, *, k: int = K_OOD,
               self_rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """OOD columns of N embeddings of ``modality`` against a catalog:
    ``{"kth_distance", "ood_score", "unfamiliar"}``, each (N,).

    ``vectors`` are (N, E) or (E,) unit embeddings made by the catalog's model; ``self_rows``
    (catalog row of each, -1 for none) when the scored objects are themselves in the catalog.
    """
    ref = load_reference(catalog, modality, k)
    d = kth_distances(catalog, modality, vectors, k, self_rows)
    score, flag = ref.score(d)
    return {"kth_distance": d, "ood_score": score, "unfamiliar": flag}


def query_ood(catalog, modality: str, vector: np.ndarray, self_row: int | None = None) -> dict:
    """``{"ood_score", "unfamiliar", "ood_k", "ood_distance"}`` of one query, as plain values
    (the fields a search result's ``query`` carries)."""
    out = ood_scores(catalog, modality, vector[None],
                     self_rows=None if self_row is None else np.array([self_row]))
    ref = load_reference(catalog, modality)
    return {"ood_score": round(float(out["ood_score"][0]), 4),
            "unfamiliar": bool(out["unfamiliar"][0]), "ood_k": ref.k,
            "ood_distance": round(float(out["kth_distance"][0]), 5)}
