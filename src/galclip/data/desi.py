"""DESI spectra: ``coadd-*.fits`` / ``spectra-*.fits`` and ``redrock-*.fits`` / ``zbest-*.fits``.

Follows the desispec data model (desidatamodel: DESI_SPECTRO_REDUX/SPECPROD/healpix/.../coadd,
redrock): per arm (B, R, Z) the HDUs ``{ARM}_WAVELENGTH`` (Angstrom), ``{ARM}_FLUX``
(1e-17 erg/s/cm^2/A), ``{ARM}_IVAR``, ``{ARM}_MASK`` (0 = good), and a ``FIBERMAP`` table, row
matched with the spectra. The three arms lie on one 0.8 A grid (B 3600-5800, R 5760-7620,
Z 7520-9824 A), so merging them onto the 7781-pixel galclip grid is exact placement plus an
inverse-variance weighted mean where arms overlap (as desispec.coaddition.coadd_cameras):

    flux = sum_a ivar_a flux_a / sum_a ivar_a,   ivar = sum_a ivar_a,

with ivar_a = 0 wherever MASK != 0. A file without any ``{ARM}_IVAR`` HDU is read with an ivar
estimated from the flux, arm by arm (:mod:`galclip.data.noise`), and its rows carry
``ivar_estimated`` True. Redshifts come from the ``REDSHIFTS`` (redrock) or
``ZBEST`` (older zbest) HDU, joined on TARGETID.

Ingest checks (a failure is an error naming file, HDU/column and row, or a reject with
``--skip-bad``): header CHECKSUM and DATASUM (FITS checksum convention) wherever present; each
arm's wavelengths equal the DESI grid of :data:`DESI_ARMS` within :data:`GRID_TOLERANCE_A`;
MASK HDUs are integer; TARGET_RA in [0, 360), TARGET_DEC in [-90, 90]; redrock Z finite and in
:data:`REDSHIFT_RANGE`; unmasked flux finite with |flux| <= :data:`FLUX_LIMIT` and ivar finite,
in [0, :data:`IVAR_LIMIT`]. The ranges and checks are shared with every reader
(:mod:`galclip.data.readers`).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.data.readers import (  # noqa: F401 - the ranges are re-exported as desi's
    FLUX_LIMIT,
    IVAR_LIMIT,
    REDSHIFT_RANGE,
    Batch,
    Problem,
    ReaderError,
    RejectLog,
    coordinate_problem,
    guarded,
    iter_chunks,
    lookup_sorted,
    redshift_problem,
    spectrum_problem,
)

ARMS = ("B", "R", "Z")
REDSHIFT_HDUS = ("REDSHIFTS", "ZBEST")
#: fibermap column -> galclip column (Legacy Survey photometry in nanomaggies)
FIBERMAP_COLUMNS = {"FLUX_G": "flux_g", "FLUX_R": "flux_r", "FLUX_Z": "flux_z",
                    "FIBERFLUX_R": "fiber_flux_r", "EBV": "ebv"}
GRID_TOLERANCE_A = 1e-3
#: the DESI arms: first wavelength (Angstrom) and pixel count on the 0.8 A grid (desispec)
DESI_ARMS = {"B": (3600.0, 2751), "R": (5760.0, 2326), "Z": (7520.0, 2881)}
#: HDUs of a coadd/spectra file that galclip reads
READ_HDUS = ["FIBERMAP"] + [f"{a}_{k}" for a in ARMS for k in ("WAVELENGTH", "FLUX", "IVAR",
                                                               "MASK")]


# ----------------------------------------------------------------------------- arm merging
def arm_pixels(path: str | Path, arm: str, wave: np.ndarray) -> np.ndarray:
    """Indices of an arm's wavelengths on the galclip grid; error if off the 0.8 A grid."""
    wave = np.asarray(wave, np.float64)
    if wave.ndim != 1 or not len(wave) or not np.all(np.isfinite(wave)):
        raise ReaderError(path, f"HDU {arm}_WAVELENGTH", "wavelengths are not on the "
                          f"{C.WAVE_MIN:g} + {C.WAVE_STEP:g} i Angstrom grid (not a finite 1-D "
                          "array)")
    idx = np.rint((wave - C.WAVE_MIN) / C.WAVE_STEP).astype(np.int64)
    off = np.abs(C.WAVE_MIN + C.WAVE_STEP * idx - wave)
    if off.max(initial=0) > GRID_TOLERANCE_A:
        raise ReaderError(path, f"HDU {arm}_WAVELENGTH", "wavelengths are not on the "
                          f"{C.WAVE_MIN:g} + {C.WAVE_STEP:g} i Angstrom grid")
    if (np.diff(idx) != 1).any():
        i = int(np.flatnonzero(np.diff(idx) != 1)[0])
        raise ReaderError(path, f"HDU {arm}_WAVELENGTH", f"wavelengths do not increase by "
                          f"{C.WAVE_STEP:g} A (pixel {i}: {wave[i]:.3f} -> {wave[i + 1]:.3f})")
    if idx.min() < 0 or idx.max() >= C.N_WAVE:
        raise ReaderError(path, f"HDU {arm}_WAVELENGTH", f"range {wave.min():.1f}-{wave.max():.1f} "
                          f"A lies outside {C.WAVE_MIN:g}-{C.wavelength_grid()[-1]:g} A")
    return idx


def check_desi_arm(path: str | Path, arm: str, wave: np.ndarray) -> np.ndarray:
    """Pixel indices of a coadd arm whose grid must be the DESI one (:data:`DESI_ARMS`): a
    shifted, truncated, reversed or constant grid is an error, never a silently moved arm."""
    idx = arm_pixels(path, arm, wave)
    start, n = DESI_ARMS[arm]
    if len(idx) != n or abs(float(wave[0]) - start) > GRID_TOLERANCE_A:
        raise ReaderError(path, f"HDU {arm}_WAVELENGTH", f"{len(idx)} pixels from "
                          f"{float(wave[0]):.3f} A; the DESI {arm} arm has {n} from {start:g} A "
                          f"(tolerance {GRID_TOLERANCE_A:g} A)")
    return idx


def merge_arms(arms: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge arms onto the grid. Each arm is (pixel index (P,), flux (N, P), ivar (N, P),
    good (N, P) bool). Returns flux, ivar (N, 7781) float32; ivar = 0 where no arm is good.

    Where no arm is good the flux is 0 (as desispec's coadd_cameras), so masked garbage never
    reaches a model that ignores ivar.
    """
    n = arms[0][1].shape[0]
    num = np.zeros((n, C.N_WAVE))        # (N, 7781) sum ivar * flux
    den = np.zeros((n, C.N_WAVE))        # (N, 7781) sum ivar
    for idx, flux, ivar, good in arms:
        w = np.where(good, ivar, 0.0)
        num[:, idx] += w * np.where(good, flux, 0.0)
        den[:, idx] += w
    flux = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return flux.astype(np.float32), den.astype(np.float32)


def estimate_arm_ivar(flux: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Estimated ivar (N, P) of one arm's spectra (N, P) that came without IVAR: a local
    DER_SNR on the unmasked pixels (:mod:`galclip.data.noise`)."""
    from galclip.data.noise import estimate_ivar

    return np.stack([estimate_ivar(f, m == 0) for f, m in zip(flux, mask, strict=True)])


# ----------------------------------------------------------------------------- redshifts
def read_redshifts(path: str | Path) -> dict[str, np.ndarray]:
    """TARGETID, Z, ZERR, ZWARN, SPECTYPE, DELTACHI2 from a redrock or zbest file."""
    from astropy.io import fits

    path = Path(path)

    def load() -> dict[str, np.ndarray]:
        with fits.open(path, memmap=False) as hdul:
            names = [h.name for h in hdul]
            hdu = next((n for n in REDSHIFT_HDUS if n in names), None)
            if hdu is None:
                raise ReaderError(path, "HDU REDSHIFTS", f"missing (neither {REDSHIFT_HDUS} in "
                                  f"{names})")
            data = hdul[hdu].data
            if not isinstance(data, fits.FITS_rec):
                raise ReaderError(path, f"HDU {hdu}", f"not a binary table "
                                  f"({type(hdul[hdu]).__name__})")
            cols = [c.upper() for c in data.columns.names]
            out = {}
            for c in ("TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE", "DELTACHI2"):
                if c not in cols:
                    raise ReaderError(path, f"HDU {hdu} column {c}", "missing")
                out[c] = np.asarray(data[c])
            out["SPECTYPE"] = np.char.strip(out["SPECTYPE"].astype(str))
            return out

    out = guarded(path, "HDU REDSHIFTS", load)
    ids = out["TARGETID"].astype(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ReaderError(path, "HDU REDSHIFTS column TARGETID",
                          f"duplicate TARGETID {uniq[counts > 1][0]}")
    return out


class RedshiftTable:
    """Redshifts from several redrock/zbest files, looked up by TARGETID.

    With a lenient ``rejects`` an unreadable redshift file is a reject (its objects then have
    no redshift), not the end of the build."""

    def __init__(self, paths: list[str | Path] = (), rejects: RejectLog | None = None):
        self.files = [str(p) for p in paths]
        parts = []
        for p in paths:
            try:
                part = read_redshifts(p)
            except ReaderError as e:
                if rejects is None or rejects.strict:
                    raise
                rejects.add(e.path, e.field or "", f"unreadable file: {e.reason}", e.row,
                            fatal=False)
                continue
            part["FILE"] = np.full(len(part["Z"]), str(p), dtype=object)
            part["ROW"] = np.arange(len(part["Z"]))
            parts.append(part)
        keys = ("TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE", "DELTACHI2", "FILE", "ROW")
        self.cols = {k: np.concatenate([p[k] for p in parts]) if parts else np.array([])
                     for k in keys}
        ids = self.cols["TARGETID"].astype(np.int64)
        order = np.argsort(ids, kind="stable")
        self._ids, self._order = ids[order], order
        if len(ids) and (np.diff(self._ids) == 0).any():
            dup = self._ids[1:][np.diff(self._ids) == 0][0]
            raise ReaderError(", ".join(self.files), "TARGETID",
                              f"TARGETID {dup} appears in more than one redshift file")

    def lookup(self, targetid: np.ndarray) -> np.ndarray:
        """Row in the table for each TARGETID, -1 where absent."""
        return lookup_sorted(self._ids, self._order, targetid)

    def problem(self, j: int) -> tuple[str, str, int, str] | None:
        """(file, column, row, reason) when entry ``j`` holds an impossible redshift."""
        bad = redshift_problem(self.cols["Z"][j], "Z")
        if bad is None:
            return None
        return str(self.cols["FILE"][j]), bad[0], int(self.cols["ROW"][j]), bad[1]


# ----------------------------------------------------------------------------- spectra
class DesiSpectraFile:
    """One coadd or spectra file: fibermap and wavelength grids read once, spectra in chunks."""

    def __init__(self, path: str | Path):
        from astropy.io import fits

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        self.hdul = guarded(self.path, "FITS", lambda: fits.open(self.path, memmap=False))
        try:   # astropy parses headers lazily: a corrupt card raises while we look (VerifyError)
            guarded(self.path, "FITS headers", self._open)
        except ReaderError:
            self.close()
            raise

    def _open(self) -> None:
        self.names = [h.name for h in self.hdul]
        ivars = [f"{a}_IVAR" in self.names for a in ARMS]
        #: no IVAR HDU at all: the ivar is estimated from the flux (galclip.data.noise)
        self.ivar_estimated = not any(ivars)
        for hdu in READ_HDUS:
            if hdu not in self.names and not (self.ivar_estimated and hdu.endswith("_IVAR")):
                raise ReaderError(self.path, f"HDU {hdu}", "missing")
        self._verify_checksums()
        self.fibermap = guarded(self.path, "HDU FIBERMAP", lambda: self.hdul["FIBERMAP"].data)
        self.n = self._check_fibermap()
        self.pixels = {a: check_desi_arm(self.path, a, self._data(f"{a}_WAVELENGTH"))
                       for a in ARMS}
        for a in ARMS:
            self._check_mask_type(a)
            for k in ("FLUX", "MASK") if self.ivar_estimated else ("FLUX", "IVAR", "MASK"):
                shape = guarded(self.path, f"HDU {a}_{k}",
                                lambda name=f"{a}_{k}": self.hdul[name].shape)
                if tuple(shape) != (self.n, len(self.pixels[a])):
                    raise ReaderError(self.path, f"HDU {a}_{k}", f"shape {tuple(shape)}, "
                                      f"expected ({self.n}, {len(self.pixels[a])}) from FIBERMAP "
                                      f"and {a}_WAVELENGTH")

    def _verify_checksums(self) -> None:
        """DESI writes CHECKSUM (header + data) and DATASUM (data) per HDU, FITS checksum
        convention: a mismatch means the file changed after writing, which no value check could
        reliably catch (one flipped BZERO digit of a MASK HDU masks a whole arm)."""
        for name in (n for n in READ_HDUS if n in self.names):
            hdu = self.hdul[name]
            if "CHECKSUM" in hdu.header:
                check, what = hdu.verify_checksum, "CHECKSUM (header and data)"
            elif "DATASUM" in hdu.header:
                check, what = hdu.verify_datasum, "DATASUM"
            else:
                continue
            if guarded(self.path, f"HDU {name}", check) == 0:
                raise ReaderError(self.path, f"HDU {name}", f"{what} mismatch: the file is "
                                  "corrupt (changed after it was written)")

    def _check_mask_type(self, arm: str) -> None:
        """MASK is a bitmask: integer BITPIX, no scaling beyond the unsigned-int BZERO."""
        hdr = self.hdul[f"{arm}_MASK"].header
        bitpix, bzero = hdr.get("BITPIX"), hdr.get("BZERO", 0)
        ok = bitpix in (8, 16, 32, 64) and hdr.get("BSCALE", 1) == 1 and \
            bzero in (0, 2 ** (bitpix - 1) if isinstance(bitpix, int) and bitpix > 0 else 0)
        if not ok:
            raise ReaderError(self.path, f"HDU {arm}_MASK", f"not an integer bitmask (BITPIX "
                              f"{bitpix!r}, BZERO {bzero!r}, BSCALE {hdr.get('BSCALE', 1)!r})")

    def _data(self, hdu: str, rows: slice | None = None) -> np.ndarray:
        def load() -> np.ndarray:
            h = self.hdul[hdu]
            if h.data is None if rows is None else not h.shape:
                raise ReaderError(self.path, f"HDU {hdu}", "has no data")
            # .section reads only the requested rows and applies BZERO/BSCALE (uint32 MASK)
            return np.array(h.data if rows is None else h.section[rows])
        return guarded(self.path, f"HDU {hdu}", load)

    def _check_fibermap(self) -> int:
        names = [c.upper() for c in guarded(self.path, "HDU FIBERMAP",
                                            lambda: self.fibermap.columns.names)]
        for c in ("TARGETID", "TARGET_RA", "TARGET_DEC"):
            if c not in names:
                raise ReaderError(self.path, f"HDU FIBERMAP column {c}", "missing")
        return len(self.fibermap)

    def column(self, name: str, default: float | str | None = None) -> np.ndarray:
        names = [c.upper() for c in self.fibermap.columns.names]
        if name not in names:
            if default is None:
                raise ReaderError(self.path, f"HDU FIBERMAP column {name}", "missing")
            return np.full(self.n, default)
        return guarded(self.path, f"HDU FIBERMAP column {name}",
                       lambda: np.asarray(self.fibermap[name]))

    def read_rows(self, start: int, stop: int
                  ) -> tuple[np.ndarray, np.ndarray, dict[int, Problem]]:
        """Merged flux, ivar (n, 7781) for rows [start, stop) and {row: problem} for bad rows."""
        rows, arms, bad = slice(start, stop), [], {}
        for a in ARMS:
            flux = self._data(f"{a}_FLUX", rows).astype(np.float64)
            mask = self._data(f"{a}_MASK", rows)
            ivar = (estimate_arm_ivar(flux, mask) if self.ivar_estimated
                    else self._data(f"{a}_IVAR", rows).astype(np.float64))
            for i in range(stop - start):
                problem = spectrum_problem(flux[i], ivar[i], (mask[i] == 0) & (ivar[i] > 0),
                                           (f"{a}_FLUX", f"{a}_IVAR"))
                if problem and start + i not in bad:
                    bad[start + i] = problem
            good = (mask == 0) & np.isfinite(ivar) & (ivar > 0) & np.isfinite(flux)
            arms.append((self.pixels[a], flux, np.where(np.isfinite(ivar), ivar, 0), good))
        flux, ivar = merge_arms(arms)
        return flux, ivar, bad

    def close(self) -> None:
        self.hdul.close()


def iter_desi_spectra(path: str | Path, redshifts: RedshiftTable | None = None,
                      rejects: RejectLog | None = None, chunk: int = 64,
                      spectype: str | None = None, zwarn_zero: bool = False,
                      require_redshift: bool = True) -> Iterator[Batch]:
    """Stream a DESI coadd/spectra file as batches of merged spectra with redshifts.

    Sky fibres, fibres without a target (TARGETID < 0), objects without a redshift and, on
    request, other spectral types or ZWARN != 0 are left out and recorded in ``rejects`` (never
    silently dropped). Bad data (NaN flux, negative ivar) raises unless ``rejects`` is lenient.
    """
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    f = DesiSpectraFile(path)
    try:
        yield from _iter_file(f, redshifts or RedshiftTable(), rejects, chunk, spectype,
                              zwarn_zero, require_redshift)
    finally:
        f.close()


def _iter_file(f: DesiSpectraFile, zt: RedshiftTable, rejects: RejectLog, chunk: int,
               spectype: str | None, zwarn_zero: bool, require_redshift: bool) -> Iterator[Batch]:
    tid = guarded(f.path, "HDU FIBERMAP column TARGETID",
                  lambda: f.column("TARGETID").astype(np.int64))
    meta = guarded(f.path, "HDU FIBERMAP", lambda: {
        "ra": f.column("TARGET_RA").astype(np.float64),
        "dec": f.column("TARGET_DEC").astype(np.float64),
        **{new: f.column(old, np.nan).astype(np.float32) for old, new in FIBERMAP_COLUMNS.items()}})
    objtype = guarded(f.path, "HDU FIBERMAP column OBJTYPE",
                      lambda: np.char.strip(f.column("OBJTYPE", "").astype(str)))
    zrow = zt.lookup(tid)
    keep = _select(f.path, tid, objtype, zrow, zt, rejects, spectype, zwarn_zero, require_redshift)
    keep &= _valid_values(f.path, tid, meta, zrow, zt, rejects, keep)
    for start, stop in iter_chunks(f.n, chunk):
        rows = np.arange(start, stop)[keep[start:stop]]
        if not len(rows):
            continue
        flux, ivar, bad = f.read_rows(start, stop)
        ok = []
        for r in rows:
            if r in bad:
                rejects.add(f.path, *bad[r], int(r), int(tid[r]))
            elif not (ivar[r - start] > 0).any():
                rejects.add(f.path, "IVAR", "empty spectrum: every pixel masked or ivar = 0",
                            int(r), int(tid[r]), fatal=False)
            else:
                ok.append(r)
        if ok:
            batch = _batch(f.path, np.array(ok), start, tid, meta, zrow, zt, flux, ivar)
            batch["ivar_estimated"] = np.full(len(ok), f.ivar_estimated)
            yield batch


def _select(path: Path, tid: np.ndarray, objtype: np.ndarray, zrow: np.ndarray,
            zt: RedshiftTable, rejects: RejectLog, spectype: str | None, zwarn_zero: bool,
            require_redshift: bool) -> np.ndarray:
    keep = np.ones(len(tid), bool)
    for r in range(len(tid)):
        reason = None
        if objtype[r] == "SKY":
            reason = "sky fibre: OBJTYPE = SKY"
        elif tid[r] < 0:
            reason = "no target: TARGETID < 0 (unassigned fibre or stuck positioner)"
        elif zrow[r] < 0 and require_redshift:
            reason = "no redshift: TARGETID not in any redrock/zbest file given"
        elif zrow[r] >= 0 and spectype and zt.cols["SPECTYPE"][zrow[r]] != spectype.upper():
            reason = f"spectype: {zt.cols['SPECTYPE'][zrow[r]]}, selected {spectype.upper()}"
        elif zrow[r] >= 0 and zwarn_zero and int(zt.cols["ZWARN"][zrow[r]]) != 0:
            reason = f"zwarn: {int(zt.cols['ZWARN'][zrow[r]])}, selected ZWARN = 0"
        if reason:
            keep[r] = False
            rejects.add(path, "FIBERMAP", reason, r, int(tid[r]), fatal=False)
    return keep


def _valid_values(path: Path, tid: np.ndarray, meta: dict, zrow: np.ndarray, zt: RedshiftTable,
                  rejects: RejectLog, keep: np.ndarray) -> np.ndarray:
    """False for selected rows with impossible coordinates or redshift (errors when strict)."""
    ok = np.ones(len(tid), bool)
    for r in np.flatnonzero(keep):
        coord = coordinate_problem(meta["ra"][r], meta["dec"][r], ("TARGET_RA", "TARGET_DEC"))
        if coord:
            ok[r] = False
            rejects.add(path, f"HDU FIBERMAP column {coord[0]}", coord[1], int(r), int(tid[r]))
            continue
        bad_z = zt.problem(int(zrow[r])) if zrow[r] >= 0 else None
        if bad_z:
            ok[r] = False
            rejects.add(bad_z[0], f"HDU REDSHIFTS column {bad_z[1]}", bad_z[3], bad_z[2],
                        int(tid[r]))
    return ok


def _batch(path: Path, rows: np.ndarray, start: int, tid: np.ndarray, meta: dict,
           zrow: np.ndarray, zt: RedshiftTable, flux: np.ndarray, ivar: np.ndarray) -> Batch:
    zr = zrow[rows]
    has = zr >= 0

    def z(col: str, fill, dtype) -> np.ndarray:
        vals = np.full(len(rows), fill, dtype=dtype)
        vals[has] = zt.cols[col][zr[has]]
        return vals

    return {"object_id": tid[rows], "row": rows.astype(np.int64),
            **{k: v[rows] for k, v in meta.items()},
            "redshift": z("Z", np.nan, np.float64).astype(np.float32),
            "redshift_err": z("ZERR", np.nan, np.float32),
            "zwarn": z("ZWARN", -1, np.int64),
            "deltachi2": z("DELTACHI2", np.nan, np.float32),
            "spectype": z("SPECTYPE", "", object).astype(str),
            "spectrum_flux": flux[rows - start], "spectrum_ivar": ivar[rows - start],
            "source": np.full(len(rows), path.name)}


def read_desi_spectra(path: str | Path, redshift_files: list[str | Path] = (),
                      **kwargs) -> tuple[Batch, RejectLog]:
    """Read a whole (small) DESI file into one batch; returns it with the rejects."""
    rejects = kwargs.pop("rejects", None) or RejectLog(strict=True)
    batches = list(iter_desi_spectra(path, RedshiftTable(redshift_files, rejects), rejects,
                                     **kwargs))
    if not batches:
        return {}, rejects
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}, rejects
