"""Cone search over a catalog's positions: every object within ``radius`` of (ra, dec).

Angular separation by the haversine formula (well conditioned at small angles); positions in
degrees (ICRS, as the catalog's ``ra``/``dec`` columns), radius in arcseconds.
"""
from __future__ import annotations

import numpy as np


def angular_separation_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Great-circle distance in degrees from (ra0, dec0) to each (ra, dec), all in degrees."""
    r0, d0, r, d = (np.radians(np.asarray(x, np.float64)) for x in (ra0, dec0, ra, dec))
    h = np.sin((d - d0) / 2) ** 2 + np.cos(d0) * np.cos(d) * np.sin((r - r0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def cone_rows(ra0: float, dec0: float, radius_arcsec: float, ra: np.ndarray, dec: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, separations in arcsec) inside the cone, nearest first."""
    if not -90 <= dec0 <= 90:
        raise ValueError(f"dec must be between -90 and 90 degrees (got {dec0})")
    if not radius_arcsec > 0:
        raise ValueError(f"radius must be positive, in arcsec (got {radius_arcsec})")
    sep = angular_separation_deg(ra0 % 360.0, dec0, ra, dec) * 3600.0
    rows = np.flatnonzero(sep <= radius_arcsec)
    order = np.argsort(sep[rows], kind="stable")
    return rows[order], sep[rows][order]
