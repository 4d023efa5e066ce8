"""Write an embedding catalog as a HATS catalog (Hierarchical Adaptive Tiling Scheme: HEALPix
-partitioned Parquet, Caplar et al. 2025), the format LSDB opens and cross-matches, in which
LSDB publishes DESI DR1 and the Multimodal Universe its surveys.

Every row keeps its metadata and its ``image_embedding`` / ``spectrum_embedding`` (lists of
float32, null where a modality is missing); HATS adds ``_healpix_29``. The catalog is built with
``lsdb.from_dataframe`` (in memory: fine up to a few million rows; for larger catalogs run
``hats-import`` on the catalog's Parquet shards) and written as a collection with a margin
cache, so cross-matches near partition edges are complete. Needs ``pip install galclip[hats]``.

    import lsdb
    emb = lsdb.open_catalog("catalogs/sim-hats")
    pairs = emb.crossmatch(lsdb.open_catalog("other-hats"), radius_arcsec=1.0)
"""
from __future__ import annotations

import json
from pathlib import Path

from galclip.search.catalog import CatalogError, read_catalog_manifest, read_catalog_table

MARGIN_ARCSEC = 10.0  # margin cache width: cross-matches up to this radius see across tiles


def _lsdb():
    try:
        import lsdb
    except ImportError as e:
        raise CatalogError("HATS export needs the hats extra: pip install 'galclip[hats]' "
                           f"(hats, hats-import, lsdb): {e}") from None
    return lsdb


def export_hats(catalog_dir: str | Path, out_dir: str | Path, *, name: str | None = None,
                partition_rows: int | None = None, overwrite: bool = False) -> Path:
    """Write ``catalog_dir`` as a HATS collection at ``out_dir``; returns ``out_dir``."""
    import pandas as pd

    lsdb = _lsdb()
    catalog_dir, out_dir = Path(catalog_dir), Path(out_dir)
    manifest = read_catalog_manifest(catalog_dir)
    missing = {"ra", "dec"} - set(manifest["columns"])
    if missing:
        raise CatalogError(f"{catalog_dir}: a HATS catalog needs positions; columns "
                           f"{sorted(missing)} are missing")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty (pass --overwrite to replace it)")
    df = read_catalog_table(catalog_dir).to_pandas(types_mapper=pd.ArrowDtype)
    name = name or catalog_dir.name
    cat = lsdb.from_dataframe(df, ra_column="ra", dec_column="dec", catalog_name=name,
                              partition_rows=partition_rows, margin_threshold=MARGIN_ARCSEC)
    cat.to_hats(out_dir, catalog_name=name, overwrite=overwrite, progress_bar=False)
    provenance = {"galclip_catalog": str(catalog_dir), "model": manifest.get("model", {}),
                  "modalities": manifest.get("modalities"), "n_rows": manifest.get("n_rows")}
    (out_dir / "galclip_provenance.json").write_text(json.dumps(provenance, indent=1))
    return out_dir
