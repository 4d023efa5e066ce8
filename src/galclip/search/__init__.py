"""Search over whole surveys: embedding catalogs, FAISS indexes, filters, cone search, the search
API; the explorer that serves it over HTTP is :mod:`galclip.serve`.

``Catalog(dir).search(id=..., to="spectrum", k=10, where="redshift > 0.3")``; see docs/search.md.
"""
from __future__ import annotations

__all__ = ["Catalog", "SearchResult", "build_catalog", "build_index"]


def __getattr__(name: str):
    # imported lazily so that `galclip --help` does not load pyarrow and faiss
    if name in ("Catalog", "SearchResult"):
        from galclip.search import api

        return getattr(api, name)
    if name == "build_catalog":
        from galclip.search.catalog import build_catalog

        return build_catalog
    if name == "build_index":
        from galclip.search.index import build_index

        return build_index
    raise AttributeError(f"module 'galclip.search' has no attribute {name!r}")
