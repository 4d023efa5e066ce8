"""How unfamiliar a query is to a catalog: a calibrated k-th-nearest-neighbour OOD score.

Score (deep nearest neighbours, Sun et al. 2022, ICML, "Out-of-Distribution Detection with
Deep Nearest Neighbors"): the cosine distance d_k = 1 - cos from the query's embedding to its
k-th nearest catalog embedding of the same modality (:data:`K_OOD`). A raw distance means
nothing across models, so it is calibrated against the catalog's held-out galaxies: every
test-split row and every look-up-only ``reference`` row (:data:`HELDOUT_SPLITS`,
:func:`galclip.data.splits.rows_in`; neither was trained on) gets its own d_k against the
rest of the catalog (itself left out, so it is scored as a new query would be), and

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

The redshift check (spectra given as flux and ivar). A distance alone misses the worst case: a
real spectrum that lands *near* the simulated manifold, in a region whose neighbours agree on
the wrong redshift (benchmarks/RESULTS.md, "Sim-to-real"). So where the spectrum itself is at
hand, its neighbours' redshift is checked against an estimate built unlike the learned model,
a χ² template fit on a PCA basis of galclip's own SEDs
(:class:`galclip.search.redshift_templates.LogTemplateFit`), with the tension

    t = |ln(1 + z_nn) - ln(1 + z_template)| / (s_nn + SIGMA_FLOOR)

where z_nn is the median redshift of the :data:`K_Z` nearest catalog spectra and s_nn half the
16-84 % range of their ln(1 + z): a wrong answer the neighbours themselves are unsure of scores
little, a confident wrong one scores high. The query's score is then the larger of its two
ranks among the held-out rows (distance and tension), calibrated once more on the held-out rows
so that the union still flags :data:`FLAG_FRACTION` of them. The basis is made by the
simulator and stored beside the index by ``galclip index --ood-templates`` and the demo
(``ood-templates.npz``, :func:`galclip.eval.template_fit.write_catalog_basis`); the tensions of
the held-out rows (at most :data:`MAX_TEMPLATE_REFERENCE`, their spectra read from the
catalog's dataset) are computed when a query first gives its spectrum and stored in the
reference, so scoring by distance alone (ids, vectors, a default ``galclip predict``) never
pays for them. Without a basis, a dataset or catalog
redshifts, or for a query given as an id or a vector, the score is the distance alone
(``ood_check`` says which).
"""
from __future__ import annotations

import contextlib
import json
import sys
import weakref
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from galclip import conventions as C

K_OOD = 10              # neighbour whose distance is the score
FLAG_FRACTION = 0.01    # share of held-out catalog galaxies flagged unfamiliar
HELDOUT_SPLITS = ("test", "reference")   # rows no model was trained on: they calibrate
MAX_REFERENCE = 5_000   # held-out rows scored for the reference (a seeded sample above): the
                        # flagged share is then 1 % +- 0.14 % (binomial), at one k-NN search each
K_Z = 16                # neighbours whose median redshift the template check tests
SIGMA_FLOOR = 0.002     # ln(1 + z): the tightest redshift spread a neighbour set is credited with,
                        # a fifth of the 0.01 (1 + z) within which a redshift counts as right
MAX_TEMPLATE_REFERENCE = 1_000   # held-out spectra template-fitted (~50 ms each)
FORMAT = "galclip-ood"
VERSION = 2
_LOADED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Catalog -> {(modality, k): ref}
_CHECK_TRIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Catalog -> {(modality, k)}


@dataclass(frozen=True)
class TemplateCheck:
    """The held-out distribution of the redshift check (spectra only)."""

    fitter: object          # redshift_templates.LogTemplateFit on the stored basis
    basis_sha256: str
    tension: np.ndarray     # (T,) sorted tensions of the held-out rows
    combined: np.ndarray    # (T,) sorted max(rank of d_k, rank of tension) of the same rows
    threshold: float        # combined rank above which a query is unfamiliar

    def to_json(self) -> dict:
        return {"basis_sha256": self.basis_sha256, "threshold": self.threshold,
                "tension": self.tension.tolist(), "combined": self.combined.tolist()}


@dataclass(frozen=True)
class OODReference:
    """The held-out distribution of one modality of a catalog: sorted k-th-neighbour distances
    (and, for spectra where it can be built, the redshift check's)."""

    modality: str
    k: int
    distances: np.ndarray   # (R,) sorted cosine distances of the held-out rows
    threshold: float        # d_k above which a query is unfamiliar (distance alone)
    key: str                # identity of the catalog + index it was computed on
    check: TemplateCheck | None = None

    def score(self, kth_distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ood_score (N,) in [0, 1], unfamiliar (N,) bool) of k-th-neighbour distances."""
        d = np.asarray(kth_distance, np.float64)
        frac = np.searchsorted(self.distances, d, side="left") / max(len(self.distances), 1)
        return frac, d > self.threshold

    def rank(self, kth_distance: np.ndarray) -> np.ndarray:
        """Share of the held-out rows whose d_k is smaller, (N,)."""
        return _rank(self.distances, kth_distance)

    def combined_score(self, kth_distance: np.ndarray, tension: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(ood_score, unfamiliar) of the distance and the redshift check together."""
        c = self.check
        s = np.maximum(self.rank(kth_distance), _rank(c.tension, tension))
        return _rank(c.combined, s), s > c.threshold

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "modality": self.modality, "k": self.k,
                "flag_fraction": FLAG_FRACTION, "split": list(HELDOUT_SPLITS), "key": self.key,
                "threshold": self.threshold, "distances": self.distances.tolist(),
                "template_check": None if self.check is None else self.check.to_json()}


def _rank(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.searchsorted(sorted_values, x, side="left") / max(len(sorted_values), 1)


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


def neighbour_redshift(catalog, modality: str, vectors: np.ndarray,
                       self_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(z_nn, s_nn), each (N,): the median redshift of each vector's :data:`K_Z` nearest catalog
    rows of ``modality`` (own row left out) and half the 16-84 % range of their ln(1 + z)."""
    from galclip.search.api import _one_thread

    loaded = catalog.index(modality)
    q = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)   # (N, E)
    with _one_thread() if len(q) <= 8 else contextlib.nullcontext():
        _, p = loaded.index.search(q, int(min(K_Z + 1, len(loaded.rows))))   # (N, K_Z + 1)
    rows = np.where(p >= 0, loaded.rows[np.maximum(p, 0)], -1)
    if self_rows is not None:
        rows = np.where(rows == np.asarray(self_rows, np.int64)[:, None], -1, rows)
    z = np.asarray(catalog.meta["redshift"], np.float64)
    lz = np.where(rows >= 0, np.log1p(z[np.maximum(rows, 0)]), np.nan)
    lz = _first(lz, K_Z)                                                # (N, K_Z)
    with np.errstate(all="ignore"):
        lo, mid, hi = np.nanquantile(lz, [0.16, 0.5, 0.84], axis=1)
    return np.expm1(mid), 0.5 * (hi - lo)


def _first(lz: np.ndarray, k: int) -> np.ndarray:
    """The first k non-NaN entries of each row (search order), NaN-padded."""
    order = np.argsort(np.isnan(lz), axis=1, kind="stable")
    return np.take_along_axis(lz, order, 1)[:, :k]


def tension(z_nn: np.ndarray, s_nn: np.ndarray, z_template: np.ndarray) -> np.ndarray:
    """|ln(1 + z_nn) - ln(1 + z_template)| / (s_nn + SIGMA_FLOOR): how many of its own
    spreads the neighbours' redshift lies from the template fit's."""
    return np.abs(np.log1p(z_nn) - np.log1p(z_template)) / (s_nn + SIGMA_FLOOR)


def _key(catalog, modality: str, k: int) -> str:
    import hashlib

    from galclip.search.catalog import catalog_fingerprint

    info = {c: v for c, v in catalog.index(modality).info.items() if isinstance(v, (int, str))}
    blob = json.dumps([catalog_fingerprint(catalog.manifest), modality, k, info], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def reference_path(catalog_dir: str | Path, modality: str) -> Path:
    return Path(catalog_dir) / f"ood-{modality}.json"


def build_reference(catalog, modality: str, k: int = K_OOD, check: bool = True) -> OODReference:
    """Score the catalog's held-out rows against the rest of the catalog (no file written);
    for spectra with ``check`` also the redshift check where it can be built
    (:func:`template_check`)."""
    loaded, pos, vecs, d = _heldout(catalog, modality, k)
    thr = float(np.quantile(d, 1.0 - FLAG_FRACTION))
    ref = OODReference(modality, k, np.sort(d), thr, _key(catalog, modality, k))
    if modality != "spectrum" or not check:
        return ref
    return replace(ref, check=template_check(catalog, ref, loaded.rows[pos], vecs, d))


def with_check(catalog, ref: OODReference) -> OODReference:
    """``ref`` with the redshift check added where it can be built (unchanged where not)."""
    loaded, pos, vecs, d = _heldout(catalog, ref.modality, ref.k)
    return replace(ref, check=template_check(catalog, ref, loaded.rows[pos], vecs, d))


def _heldout(catalog, modality: str, k: int):
    """The held-out rows that calibrate the score: (loaded index, their positions in it, their
    unit vectors, their k-th distances to the rest of the catalog)."""
    from galclip.data.splits import rows_in

    loaded = catalog.index(modality)
    ids = catalog.meta["object_id"][loaded.rows]
    stored = catalog.meta["split"][loaded.rows] if "split" in catalog.meta else None
    pos = rows_in(ids, HELDOUT_SPLITS, stored=stored)
    if len(pos) == 0:
        raise ValueError(f"catalog {catalog.path} has no {' or '.join(HELDOUT_SPLITS)} rows with a "
                         f"{modality} embedding to calibrate the OOD score on")
    if len(pos) > MAX_REFERENCE:
        pos = np.sort(np.random.default_rng(0).choice(pos, MAX_REFERENCE, replace=False))
    vecs = _vectors(catalog, loaded, pos)                                  # (R, E)
    return loaded, pos, vecs, kth_distances(catalog, modality, vecs, k, self_rows=loaded.rows[pos])


def template_check(catalog, ref: OODReference, rows: np.ndarray, vectors: np.ndarray,
                   kth: np.ndarray) -> TemplateCheck | None:
    """The redshift check calibrated on held-out catalog rows (their catalog ``rows``, unit
    ``vectors`` and k-th distances ``kth``, all (R,) / (R, E)): at most
    :data:`MAX_TEMPLATE_REFERENCE` of them (a seeded sample) are template-fitted, their spectra
    read from the catalog's dataset. None (and a note on stderr) where it cannot be built."""
    take = np.arange(len(rows))
    if len(take) > MAX_TEMPLATE_REFERENCE:
        take = np.sort(np.random.default_rng(1).choice(take, MAX_TEMPLATE_REFERENCE, replace=False))
    try:
        if "redshift" not in catalog.meta:
            raise ValueError(f"catalog {catalog.path} has no redshift column")
        fitter, sha = load_basis(catalog)
        flux, ivar = heldout_spectra(catalog, rows[take])
    except (ImportError, ValueError, OSError) as e:
        print(f"galclip: OOD score by distance alone, no redshift check: {e}", file=sys.stderr)
        return None
    z_nn, s_nn = neighbour_redshift(catalog, "spectrum", vectors[take], rows[take])
    if not np.isfinite(z_nn).any():
        print(f"galclip: OOD score by distance alone: catalog {catalog.path} has no finite "
              f"redshifts", file=sys.stderr)
        return None
    print(f"galclip: calibrating the OOD redshift check on {len(take)} held-out spectra (once "
          f"per catalog)", file=sys.stderr)
    z_t = np.array([fitter.redshift(f, i) for f, i in zip(flux, ivar, strict=True)])
    t = np.nan_to_num(tension(z_nn, s_nn, z_t), nan=0.0)
    comb = np.maximum(ref.rank(kth[take]), _rank(np.sort(t), t))
    return TemplateCheck(fitter, sha, np.sort(t), np.sort(comb),
                         float(np.quantile(comb, 1.0 - FLAG_FRACTION)))


def heldout_spectra(catalog, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flux, ivar), each (R, 7781), of catalog ``rows`` from the dataset the catalog was
    embedded from (its manifest's ``dataset.path``), matched by object_id."""
    return DatasetSpectra(catalog.manifest, catalog.path).read(catalog.meta["object_id"][rows])


class DatasetSpectra:
    """The spectra of a catalog's objects, read by object_id from the dataset its manifest
    names (``dataset.path``); safe to call from several threads."""

    def __init__(self, manifest: dict, where: str | Path):
        import threading

        from galclip.data import open_dataset

        path = (manifest.get("dataset") or {}).get("path")
        if not path or not Path(path).exists():
            raise ValueError(f"catalog {where} records no readable dataset ({path or 'none'}) "
                             f"to read its spectra from")
        self.path, self._ds, self._lock = path, open_dataset(path), threading.Lock()
        ids = self._ds.read_columns(["object_id"])["object_id"]
        self._at = {int(o): i for i, o in enumerate(ids)}

    def read(self, object_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flux, ivar), each (N, 7781) float64, in the order of ``object_ids``."""
        want = [int(o) for o in object_ids]
        if any(o not in self._at for o in want):
            raise ValueError(f"dataset {self.path} lacks some of the catalog's object_ids")
        with self._lock:
            recs = [self._ds[self._at[o]] for o in want]
        flux, ivar = np.zeros((2, len(want), C.N_WAVE))                  # (N, 7781) each
        for i, r in enumerate(recs):
            flux[i], ivar[i] = r["spectrum_flux"], r["spectrum_ivar"]
        return flux, ivar


def load_basis(catalog):
    """(LogTemplateFit, sha256 of its basis) from the basis file beside the index
    (:data:`galclip.search.redshift_templates.BASIS_FILE`); ValueError where there is none."""
    import hashlib

    from galclip.search.redshift_templates import LogTemplateFit, basis_path, read_basis

    path = basis_path(catalog.path)
    if not path.exists():
        raise ValueError(f"{path}: no template basis (galclip index --ood-templates writes it; "
                         f"needs galclip[sim])")
    lnw0, basis = read_basis(path)
    sha = hashlib.sha256(np.float64(lnw0).tobytes() + basis.tobytes()).hexdigest()
    return LogTemplateFit(lnw0, basis), sha


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


def load_reference(catalog, modality: str, k: int = K_OOD, check: bool = False) -> OODReference:
    """The stored reference of a catalog's modality, computed and stored first if missing or
    stale (kept in memory only where the catalog folder cannot be written).

    ``check``: a spectrum reference also gets the redshift check, built on first use (up to
    :data:`MAX_TEMPLATE_REFERENCE` template fits, then stored with the reference) — only a
    query that gives its spectrum uses it, so scoring by distance alone never pays for it.
    Where it cannot be built (no galclip[sim], no template basis, no dataset) the reference stays
    distance-only; the next process tries again (a basis written later is picked up)."""
    cache = _LOADED.setdefault(catalog, {})
    tried = _CHECK_TRIED.setdefault(catalog, set())
    want = check and modality == "spectrum"
    path = reference_path(catalog.path, modality)
    ref = cache.get((modality, k))
    if ref is None:
        ref = _read(catalog, path, _key(catalog, modality, k))
        if ref is None:  # one pass over the held-out rows serves the distances and the check
            ref = build_reference(catalog, modality, k, check=want)
            if want:
                tried.add((modality, k))
            _store(path, ref)
        cache[(modality, k)] = ref
    if want and ref.check is None and (modality, k) not in tried:
        tried.add((modality, k))
        ref = with_check(catalog, ref)
        if ref.check is not None:
            cache[(modality, k)] = ref
            _store(path, ref)
    return cache[(modality, k)]


def _store(path: Path, ref: OODReference) -> None:
    from galclip.storage import write_json_atomic

    try:
        write_json_atomic(path, ref.to_json())
    except OSError:
        pass   # a read-only catalog: the reference lives for this process


def _read(catalog, path: Path, key: str) -> OODReference | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if obj.get("format") != FORMAT or obj.get("version") != VERSION or obj.get("key") != key:
        return None
    ref = OODReference(obj["modality"], int(obj["k"]), np.asarray(obj["distances"], np.float64),
                       float(obj["threshold"]), key)
    tc = obj.get("template_check")
    if not tc:
        return ref       # distance only: the check is built on first use (load_reference)
    try:
        fitter, sha = load_basis(catalog)
    except (ImportError, ValueError, OSError):
        return ref       # the basis is gone: distance only
    if sha != tc["basis_sha256"]:
        return ref       # the basis beside the index changed: the check is calibrated again
    return replace(ref, check=TemplateCheck(fitter, sha, np.asarray(tc["tension"], np.float64),
                                            np.asarray(tc["combined"], np.float64),
                                            float(tc["threshold"])))


def ood_scores(catalog, modality: str, vectors: np.ndarray, *, k: int = K_OOD,
               self_rows: np.ndarray | None = None,
               spectra: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """OOD columns of N embeddings of ``modality`` against a catalog:
    ``{"kth_distance", "ood_score", "unfamiliar"}``, each (N,).

    ``vectors`` are (N, E) or (E,) unit embeddings made by the catalog's model; ``self_rows``
    (catalog row of each, -1 for none) when the scored objects are themselves in the catalog.
    ``spectra`` ((N, 7781) flux and ivar the spectrum vectors were made from) adds the redshift
    check where the catalog has one, and the columns ``neighbour_z``, ``template_z`` and
    ``tension``.
    """
    ref = load_reference(catalog, modality, k, check=spectra is not None)
    d = kth_distances(catalog, modality, vectors, k, self_rows)
    if spectra is None or ref.check is None:
        score, flag = ref.score(d)
        return {"kth_distance": d, "ood_score": score, "unfamiliar": flag}
    flux, ivar = (np.atleast_2d(np.asarray(a, np.float64)) for a in spectra)
    z_nn, s_nn = neighbour_redshift(catalog, modality, vectors, self_rows)
    z_t = np.array([ref.check.fitter.redshift(f, i) for f, i in zip(flux, ivar, strict=True)])
    t = np.nan_to_num(tension(z_nn, s_nn, z_t), nan=0.0)
    score, flag = ref.combined_score(d, t)
    return {"kth_distance": d, "ood_score": score, "unfamiliar": flag, "neighbour_z": z_nn,
            "template_z": z_t, "tension": t}


def query_ood(catalog, modality: str, vector: np.ndarray, self_row: int | None = None,
              spectrum: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """``{"ood_score", "unfamiliar", "ood_k", "ood_distance", "ood_check"}`` of one query, as
    plain values (the fields a search result's ``query`` carries); ``spectrum`` ((7781,) flux
    and ivar) adds the redshift check where the catalog has one (``ood_check``
    "distance+redshift" instead of "distance", and ``neighbour_z``, ``template_z``,
    ``z_tension``)."""
    out = ood_scores(catalog, modality, vector[None],
                     self_rows=None if self_row is None else np.array([self_row]),
                     spectra=None if spectrum is None else (spectrum[0][None], spectrum[1][None]))
    ref = load_reference(catalog, modality)
    res = {"ood_score": round(float(out["ood_score"][0]), 4),
           "unfamiliar": bool(out["unfamiliar"][0]), "ood_k": ref.k,
           "ood_distance": round(float(out["kth_distance"][0]), 5),
           "ood_check": "distance+redshift" if "tension" in out else "distance"}
    if "tension" in out:
        res.update({"neighbour_z": _plain(out["neighbour_z"][0], 5),
                    "template_z": _plain(out["template_z"][0], 5),
                    "z_tension": _plain(out["tension"][0], 3)})
    return res


def _plain(x: float, digits: int) -> float | None:
    """A rounded Python float, None where not finite (JSON has no NaN)."""
    return round(float(x), digits) if np.isfinite(x) else None
