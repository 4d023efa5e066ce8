"""Galaxies that do not fit: cross-modal mismatch and per-modality rarity in an embedding catalog.

**Mismatch** (``mismatch_score``): how much less a galaxy's own image and spectrum embeddings
agree (their cosine, the CLIP alignment score) than matched pairs of galaxies like it. "Like
it" = its ``M`` nearest galaxies in (redshift, brightness), both rank-transformed to [0, 1] (a
continuous version of bins in redshift and magnitude): the pair cosine of faint or
high-redshift galaxies is lower for everyone, so a raw cosine would flag them all. The score is
the robust z-score ``(median_M(cos) - cos) / (1.4826 MAD_M(cos))`` (Rousseeuw & Croux 1993):
3 means the pair agrees three robust sigmas worse than its peers. A swapped or mis-associated
pair, a blend in the fibre, an artefact that changes one modality only, an AGN whose lines
the image does not show: all lower the agreement. It is not a probability, and a galaxy whose
image *and* spectrum are both unusual in the same way (a genuine rare type seen consistently)
keeps a normal mismatch score: that is what rarity is for.

**Rarity** (``rarity_image``, ``rarity_spectrum``): how empty a galaxy's neighbourhood is in
one modality's space, the mean cosine distance to its ``k`` nearest other galaxies (a k-NN
density estimate, Loftsgaarden & Quesenberry 1965; as a score, the k-NN outlier of Ramaswamy
et al. 2000), reported as its quantile in the catalog (0.999: a sparser neighbourhood than
99.9 % of the galaxies). Rare is relative to *this* catalog: a common type in the universe that
the catalog holds few of is rare here, and a rare type that appears many times is not.

Both scores are larger for more unusual galaxies, NaN where a modality (or, for mismatch, the
redshift) is missing. The neighbours come from the catalog's FAISS indexes, in chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galclip.eval.metrics import NMAD_SCALE

PEERS = 200          # M: galaxies of similar redshift and brightness a pair is compared with
K_RARITY = 10        # k: neighbours of the density estimate
CHUNK_ROWS = 16384
BRIGHTNESS = ("mag_r", "flux_r")   # first present is used; fluxes are nanomaggies
SCORES = ("mismatch_score", "rarity_image", "rarity_spectrum")
METADATA_KEY = "galclip_outliers"


def robust_z(values: np.ndarray, peers: np.ndarray) -> np.ndarray:
    """``(median(peers) - value) / (1.4826 MAD(peers))`` per row; peers (n, M), NaN skipped."""
    med = np.nanmedian(peers, 1)
    mad = NMAD_SCALE * np.nanmedian(np.abs(peers - med[:, None]), 1)
    floor = 1e-6 + 1e-3 * np.nanmedian(mad) if np.isfinite(mad).any() else 1e-6
    return (med - values) / np.maximum(mad, floor)


def _rank01(x: np.ndarray) -> np.ndarray:
    """Finite values -> their rank in [0, 1] (ties by order), NaN stays NaN."""
    out = np.full(len(x), np.nan)
    ok = np.flatnonzero(np.isfinite(x))
    if len(ok):
        out[ok[np.argsort(x[ok], kind="stable")]] = np.linspace(0, 1, len(ok))
    return out


def brightness(meta: dict[str, np.ndarray]) -> np.ndarray | None:
    """An r-band magnitude (or flux, as 22.5 - 2.5 log10) column if the catalog has one."""
    for c in BRIGHTNESS:
        if c in meta:
            v = np.asarray(meta[c], float)
            if c.startswith("flux"):
                with np.errstate(invalid="ignore", divide="ignore"):
                    v = 22.5 - 2.5 * np.log10(np.where(v > 0, v, np.nan))
            return v
    return None


def mismatch_scores(cos: np.ndarray, redshift: np.ndarray, mag: np.ndarray | None,
                    peers: int = PEERS, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Robust z-score of each pair cosine among its ``peers`` nearest galaxies in (redshift,
    brightness) rank space (itself excluded); NaN where the cosine or redshift is missing."""
    from scipy.spatial import cKDTree

    feats = [_rank01(np.asarray(redshift, float))]
    if mag is not None:
        feats.append(_rank01(np.where(np.isfinite(mag), mag, np.nanmedian(mag))))
    x = np.stack(feats, 1)
    ok = np.flatnonzero(np.isfinite(cos) & np.isfinite(x).all(1))
    out = np.full(len(cos), np.nan)
    m = min(peers, len(ok) - 1)
    if m < 2:
        return out
    tree = cKDTree(x[ok])
    for lo in range(0, len(ok), chunk_rows):
        rows = ok[lo:lo + chunk_rows]
        _, idx = tree.query(x[rows], m + 1)                     # (n, m + 1) positions in ok
        peer_rows = ok[idx]
        own = peer_rows == rows[:, None]
        keep = np.where(own.any(1, keepdims=True), ~own, np.arange(m + 1)[None] < m)
        pc = np.where(keep, cos[peer_rows], np.nan)
        out[rows] = robust_z(cos[rows], pc)
    return out


def _quantile_of(x: np.ndarray) -> np.ndarray:
    """Each finite value's quantile among the finite values, in (0, 1]; NaN stays NaN."""
    out = np.full(len(x), np.nan)
    ok = np.isfinite(x)
    if ok.any():
        s = np.sort(x[ok])
        out[ok] = np.searchsorted(s, x[ok], side="right") / len(s)
    return out


@dataclass
class CatalogScores:
    """Per-galaxy columns in catalog order, and what was used to compute them."""

    columns: dict[str, np.ndarray]
    info: dict[str, Any]


def score_catalog(path: str | Path, peers: int = PEERS, k: int = K_RARITY,
                  chunk_rows: int = CHUNK_ROWS) -> CatalogScores:
    """Mismatch and rarity scores of every galaxy of a catalog (see the module docstring)."""
    from galclip.eval.predict import Searcher
    from galclip.search.api import Catalog

    cat = Catalog(Path(path))
    n = cat.n_rows
    vecs = _rows_vectors(cat, chunk_rows)
    cols: dict[str, np.ndarray] = {"object_id": cat.meta["object_id"]}
    cos = np.full(n, np.nan)
    if {"image", "spectrum"} <= set(cat.modalities):
        for lo, v in vecs():
            cos[lo:lo + len(v["image"])] = np.einsum("ij,ij->i", v["image"], v["spectrum"])
    z = cat.meta.get("redshift", np.full(n, np.nan))
    mag = brightness(cat.meta)
    cols["mismatch_score"] = mismatch_scores(cos, z, mag, peers, chunk_rows)
    for m in ("image", "spectrum"):
        mean_d = np.full(n, np.nan)
        if m in cat.modalities:
            loaded = cat.index(m)
            s = Searcher(loaded.index, loaded.rows, np.ones(n, bool))
            for lo, v in vecs():
                rows, dist = s.search(v[m], k, np.arange(lo, lo + len(v[m])))
                with np.errstate(invalid="ignore"):
                    d = np.where(rows >= 0, dist ** 2 / 2, np.nan)  # cosine distance 1 - cos
                    mean_d[lo:lo + len(d)] = np.nanmean(d, 1) if d.shape[1] else np.nan
        cols[f"rarity_{m}"] = _quantile_of(mean_d)
    cols["pair_cosine"] = cos
    info = {"peers": peers, "k": k, "brightness": next((c for c in BRIGHTNESS if c in cat.meta),
                                                       None),
            "model_sha256": cat.manifest["model"].get("sha256"), "catalog": str(Path(path).resolve())}
    return CatalogScores(cols, info)


def _rows_vectors(cat, chunk_rows: int):
    """A callable yielding (first row, {modality: (n, E) vectors, NaN where absent}) chunks."""
    from galclip.eval.predict import iter_query

    def chunks():
        lo = 0
        for _, v in iter_query(cat.path, cat.manifest, cat.modalities, chunk_rows):
            yield lo, v
            lo += len(next(iter(v.values())))
    return chunks


def top(scores: CatalogScores, by: str, n: int) -> np.ndarray:
    """Rows of the ``n`` largest finite ``by`` scores, largest first."""
    if by not in SCORES:
        raise ValueError(f"--by {by!r}: choose from {SCORES}")
    v = scores.columns[by]
    ok = np.flatnonzero(np.isfinite(v))
    return ok[np.argsort(-v[ok], kind="stable")][:n]


def find_outliers(catalog: str | Path, out: str | Path | None = None, *, top_n: int | None = None,
                  by: str = "mismatch_score", peers: int = PEERS, k: int = K_RARITY,
                  chunk_rows: int = CHUNK_ROWS):
    """Score a catalog; write (``out``) and return the Arrow table: every galaxy in catalog
    order, or with ``top_n`` the ``top_n`` most unusual by ``by``, most unusual first."""
    import json

    import pyarrow as pa

    from galclip.search.results import TableWriter, check_format

    if out is not None:
        check_format(out)
    if by not in SCORES:
        raise ValueError(f"--by {by!r}: choose from {SCORES}")
    scores = score_catalog(catalog, peers, k, chunk_rows)
    rows = top(scores, by, top_n) if top_n is not None else np.arange(len(scores.columns[by]))
    order = ["object_id", *SCORES, "pair_cosine"]
    table = pa.table({c: scores.columns[c][rows] for c in order})
    meta = {**scores.info, "by": by, "top": top_n}
    if out is not None:
        w = TableWriter(out, METADATA_KEY, meta)
        w.write(table)
        w.close()
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)})
