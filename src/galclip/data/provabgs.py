"""PROVABGS galaxy properties (Hahn et al. 2023), joined on TARGETID.

Reads the DESI EDR value-added catalogue ``BGS_ANY_full.provabgs.sv3.v0.hdf5`` (an astropy
table in HDF5: one compound dataset ``__astropy_table__``) and the one-dataset-per-column form
used by Multimodal Universe / AstroCLIP (``object_id``, ``LOG_MSTAR``, ``AVG_SFR``, ``Z_MW``,
``TAGE_MW``, ...). Only the needed fields are read (never the 100 x 13 ``PROVABGS_MCMC``).

Derived columns, named as the simulator's truth columns:

    log_mstar = log10 M* [Msun]           (LOG_MSTAR, or PROVABGS_LOGMSTAR_BF of the VAC)
    log_sfr   = log10 AVG_SFR [Msun/yr]
    log_ssfr  = log_sfr - log_mstar        [log10 yr^-1]
    logz_mw   = log10 Z_MW                 (mass-weighted stellar metallicity)
    tage_mw   = TAGE_MW [Gyr]              (mass-weighted age)

AstroCLIP's property-estimation code computes ``sSFR = ln(AVG_SFR) - ln(Z_MW)``: SFR divided
by *metallicity*, not by stellar mass, and in natural log; its VAC path also takes
``LOG_MSTAR = ln(PROVABGS_LOGMSTAR_BF)``, a log of a log. galclip uses the definitions above,
so sSFR figures are not comparable with AstroCLIP's published sSFR numbers.

VAC columns named ``PROVABGS_AVGSFR_1GYR``, ``PROVABGS_Z_MW``, ``PROVABGS_TAGE_MW`` (best-fit
``_BF`` preferred; a per-object array of posterior samples is reduced to its median) are used
when present. A file that carries only the SED parameters (``PROVABGS_THETA_BF``) and the
stellar mass cannot give SFR, Z_MW and age without the PROVABGS SPS emulator, which galclip does
not bundle: those columns are then NaN and reported as unavailable.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from galclip.data.readers import ReaderError, guarded, lookup_sorted

ALIASES = {
    "targetid": ("TARGETID", "object_id", "targetid"),
    "ra": ("RA", "ra"),
    "dec": ("DEC", "dec"),
    "z_hp": ("Z_HP",),
    "mstar": ("LOG_MSTAR", "PROVABGS_LOGMSTAR_BF", "PROVABGS_LOGMSTAR"),
    "sfr": ("AVG_SFR", "PROVABGS_AVGSFR_1GYR_BF", "PROVABGS_AVGSFR_1GYR"),
    "z_mw": ("Z_MW", "PROVABGS_Z_MW_BF", "PROVABGS_Z_MW"),
    "tage_mw": ("TAGE_MW", "PROVABGS_TAGE_MW_BF", "PROVABGS_TAGE_MW"),
}
PROPERTY_COLUMNS = ("log_mstar", "log_sfr", "log_ssfr", "logz_mw", "tage_mw")


def _pick(names: list[str], key: str) -> str | None:
    return next((a for a in ALIASES[key] if a in names), None)


def _load_columns(path: Path) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        table = _find_table(f)
        if table is not None:
            names = list(table.dtype.names)
            want = {k: _pick(names, k) for k in ALIASES}
            fields = sorted({v for v in want.values() if v})
            data = table.fields(fields)[:] if len(fields) > 1 else {fields[0]: table.fields(
                fields[0])[:]}
            return {k: np.asarray(data[v]) for k, v in want.items() if v}
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        want = {k: _pick(names, k) for k in ALIASES}
        return {k: np.asarray(f[v][:]) for k, v in want.items() if v}


def _find_table(f):
    """The compound dataset of an astropy-written table, if the file is one."""
    import h5py

    if "__astropy_table__" in f:
        return f["__astropy_table__"]
    for key in f:
        obj = f[key]
        if isinstance(obj, h5py.Dataset) and obj.dtype.names:
            return obj
    return None


def read_provabgs(path: str | Path) -> dict[str, np.ndarray | list[str]]:
    """``targetid``, ``ra``, ``dec``, ``z_hp`` and the derived property columns (NaN where a
    galaxy has no fit); ``unavailable`` lists properties the file cannot give."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    cols = guarded(path, "HDF5", lambda: _load_columns(path))
    for key in ("targetid", "mstar"):
        if key not in cols:
            raise ReaderError(path, f"column {'/'.join(ALIASES[key])}", "missing")
    n = len(cols["targetid"])
    tid = np.array([int(t.decode() if isinstance(t, bytes) else t) for t in cols["targetid"]],
                   dtype=np.int64) if cols["targetid"].dtype.kind not in "iu" \
        else cols["targetid"].astype(np.int64)
    uniq, counts = np.unique(tid, return_counts=True)
    if (counts > 1).any():
        raise ReaderError(path, "column TARGETID", f"duplicate TARGETID {uniq[counts > 1][0]}")
    def get(k: str) -> np.ndarray:
        if k not in cols:
            return np.full(n, np.nan)
        v = cols[k].astype(np.float64)
        return np.nanmedian(v.reshape(n, -1), axis=1) if v.ndim > 1 else v  # posterior samples
    props = derive_properties(get("mstar"), get("sfr"), get("z_mw"), get("tage_mw"))
    unavailable = [name for name, src in (("log_sfr", "sfr"), ("log_ssfr", "sfr"),
                                          ("logz_mw", "z_mw"), ("tage_mw", "tage_mw"))
                   if src not in cols]
    return {"targetid": tid, "ra": get("ra"), "dec": get("dec"), "z_hp": get("z_hp"),
            **props, "unavailable": unavailable}


def derive_properties(log_mstar: np.ndarray, sfr: np.ndarray, z_mw: np.ndarray,
                      tage_mw: np.ndarray) -> dict[str, np.ndarray]:
    """The galclip property columns (float32) from PROVABGS quantities; NaN where undefined
    (no fit: log M* <= 0; SFR or Z <= 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lm = np.where(log_mstar > 0, log_mstar, np.nan)
        lsfr = np.where(sfr > 0, np.log10(np.where(sfr > 0, sfr, 1)), np.nan)
        lz = np.where(z_mw > 0, np.log10(np.where(z_mw > 0, z_mw, 1)), np.nan)
    return {"log_mstar": lm.astype(np.float32), "log_sfr": lsfr.astype(np.float32),
            "log_ssfr": (lsfr - lm).astype(np.float32), "logz_mw": lz.astype(np.float32),
            "tage_mw": np.where(np.isfinite(lm), tage_mw, np.nan).astype(np.float32)}


class PropertyCatalog:
    """PROVABGS properties looked up by TARGETID."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data = read_provabgs(path)
        ids = self.data["targetid"]
        self._order = np.argsort(ids)
        self._ids = ids[self._order]

    def lookup(self, targetid: np.ndarray) -> np.ndarray:
        return lookup_sorted(self._ids, self._order, targetid)

    def columns_for(self, targetid: np.ndarray) -> dict[str, np.ndarray]:
        """Property columns for these ids (NaN where the catalogue has no entry)."""
        row = self.lookup(targetid)
        out = {}
        for c in PROPERTY_COLUMNS:
            v = np.full(len(row), np.nan, np.float32)
            v[row >= 0] = self.data[c][row[row >= 0]]
            out[c] = v
        return out
