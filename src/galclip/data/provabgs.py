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

Ingest checks (:data:`PROPERTY_RANGES`): NaN, log M* <= 0 (the VAC's -999) and SFR or Z_MW
<= 0 (no logarithm) mean "no fit" and become NaN, as before; any other value must be finite
and in its range, and RA/Dec/Z_HP, where the file has them, must be possible positions and
redshifts. A bad row is an error naming file, column and row, or with a lenient ``rejects`` a
reject (file, column, row, TARGETID) and the row is left out of the catalogue, so objects with
that TARGETID get NaN properties.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from galclip.data.readers import (
    REDSHIFT_RANGE,
    Problem,
    ReaderError,
    RejectLog,
    check_coordinates,
    guarded,
    lookup_sorted,
    numeric_column,
    range_problem,
    reject_rows,
)

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
#: what a fitted value may be (Hahn et al. 2023): the PROVABGS prior on log M* is [7, 12.5],
#: so [5, 13] holds every fit; SFR (Msun/yr) up to 1e5, beyond the most extreme starbursts
#: (~1e4); mass-weighted Z_MW between 1e-5 and 0.1 (the MIST isochrones span ~4.5e-5 to
#: ~0.045, the Sun is ~0.019); mass-weighted age 0-14 Gyr (the Universe is 13.8 Gyr old)
PROPERTY_RANGES = {"mstar": (5.0, 13.0), "sfr": (0.0, 1e5), "z_mw": (1e-5, 0.1),
                   "tage_mw": (0.0, 14.0), "z_hp": REDSHIFT_RANGE}
#: NaN means "no fit" for the fitted quantities (not Z_HP, which every row has); finite
#: values <= 0 here mean "no fit" (log M* = -999) or have no logarithm (SFR, Z = 0)
NO_FIT_AT_OR_BELOW_ZERO = ("mstar", "sfr", "z_mw")


def _pick(names: list[str], key: str) -> str | None:
    return next((a for a in ALIASES[key] if a in names), None)


def _load_columns(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The wanted columns by alias key, and the file's name for each."""
    import h5py

    with h5py.File(path, "r") as f:
        table = _find_table(f)
        if table is not None:
            names = list(table.dtype.names)
            want = {k: v for k in ALIASES if (v := _pick(names, k))}
            fields = sorted(set(want.values()))
            data = table.fields(fields)[:] if len(fields) > 1 else {fields[0]: table.fields(
                fields[0])[:]}
            return {k: np.asarray(data[v]) for k, v in want.items()}, want
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        want = {k: v for k in ALIASES if (v := _pick(names, k))}
        return {k: np.asarray(f[v][:]) for k, v in want.items()}, want


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


def read_provabgs(path: str | Path, rejects: RejectLog | None = None
                  ) -> dict[str, np.ndarray | list[str]]:
    """``targetid``, ``ra``, ``dec``, ``z_hp`` and the derived property columns (NaN where a
    galaxy has no fit); ``unavailable`` lists properties the file cannot give. Rows with
    impossible values raise, or with a lenient ``rejects`` are reported and left out."""
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    cols, sources = guarded(path, "HDF5", lambda: _load_columns(path))
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
        v = numeric_column(path, f"column {sources[k]}", cols[k], None).astype(np.float64)
        if v.ndim > 1:                                              # posterior samples
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN: no fit
                return np.nanmedian(v.reshape(n, -1), axis=1)
        return v
    raw = {k: get(k) for k in ("ra", "dec", "z_hp", "mstar", "sfr", "z_mw", "tage_mw")}
    keep = _check_rows(path, raw, sources, tid, rejects)
    raw, tid = {k: v[keep] for k, v in raw.items()}, tid[keep]
    props = derive_properties(raw["mstar"], raw["sfr"], raw["z_mw"], raw["tage_mw"])
    unavailable = [name for name, src in (("log_sfr", "sfr"), ("log_ssfr", "sfr"),
                                          ("logz_mw", "z_mw"), ("tage_mw", "tage_mw"))
                   if src not in cols]
    return {"targetid": tid, "ra": raw["ra"], "dec": raw["dec"], "z_hp": raw["z_hp"],
            **props, "unavailable": unavailable}


def _check_rows(path: Path, raw: dict[str, np.ndarray], sources: dict[str, str],
                tid: np.ndarray, rejects: RejectLog) -> np.ndarray:
    """Keep-mask: positions (where given) possible, each fitted value in its range."""
    rows = np.arange(len(tid))
    keep = np.ones(len(tid), bool)
    if "ra" in sources and "dec" in sources:
        keep = check_coordinates(path, raw["ra"], raw["dec"], rows, tid, rejects,
                                 (sources["ra"], sources["dec"]))
    problems: list[Problem | None] = [None] * len(tid)
    for key, (lo, hi) in PROPERTY_RANGES.items():
        if key not in sources:
            continue
        v = raw[key]
        no_fit = np.isnan(v) if key != "z_hp" else np.zeros(len(v), bool)   # Z_HP: always one
        if key in NO_FIT_AT_OR_BELOW_ZERO:
            no_fit |= np.isfinite(v) & (v <= 0)
        if key == "tage_mw":                     # an age only means something with a mass
            no_fit |= ~(np.isfinite(raw["mstar"]) & (raw["mstar"] > 0))
        for i in np.flatnonzero(keep & ~no_fit & ~(np.isfinite(v) & (v >= lo) & (v <= hi))):
            problems[i] = problems[i] or range_problem(sources.get(key, key), v[i], lo, hi,
                                                       "bad property")
    return keep & reject_rows(path, problems, rows, tid, rejects)


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

    def __init__(self, path: str | Path, rejects: RejectLog | None = None):
        self.path = Path(path)
        self.data = read_provabgs(path, rejects)
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
