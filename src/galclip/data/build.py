"""Build a galclip dataset from survey files: cross-match images and spectra, stream, report.

Inputs are classified by content (:func:`classify_inputs`): DESI coadd/spectra FITS (+ redrock/
zbest), DESI flux tables without ivar (:mod:`galclip.data.desi_tables`: the noise is estimated
and the row marked ``ivar_estimated``), MMU DESI HDF5, Legacy Survey cutout FITS, Stein et al.
HDF5, MMU Legacy Survey HDF5, AstroCLIP HDF5 / Hugging Face copies (already paired), and a PROVABGS catalogue.

Three passes keep memory bounded by one shard plus one chunk:

1. index the image inputs: id, ra, dec, file, row (no pixels);
2. stream the spectra; match each to an image by TARGETID, else by sky position (nearest image
   within ``match_radius_arcsec``, astropy ``match_coordinates_sky``; one image per spectrum);
   load the matched images and write rows shard by shard;
3. with ``keep_unpaired``, stream the images nobody matched.

After every shard, ``.build-state.json`` records the finished shards and a fingerprint of
options and inputs; rerunning the same build after an interruption keeps those shards and
writes only the rest. Objects that are left out go to ``rejects.csv`` with the reason;
counts go to the manifest (``build``) and are returned. Missing modalities of kept unpaired
objects are null rows (read back as NaN) with ``has_image`` / ``has_spectrum`` False.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galclip import conventions as C
from galclip.data.format import (
    MANIFEST,
    REQUIRED_COLUMNS,
    Provenance,
    remove_stale_temporaries,
    sha256_file,
    shard_name,
    write_manifest,
    write_shard,
)
from galclip.data.readers import Batch, ReaderError, RejectLog, check_coordinates, guarded
from galclip.modalities import input_columns, presence_columns
from galclip.resume import ResumeState

STATE = ".build-state.json"
SPECTRUM_KINDS = ("desi", "mmu-desi")
IMAGE_KINDS = ("cutout", "stein", "mmu-legacysurvey")
PAIRED_KINDS = ("astroclip-h5", "astroclip-hf")


@dataclass
class BuildConfig:
    """What ``galclip build-dataset`` does; every field is read by :func:`build_dataset`."""

    out: str
    spectra: list[str] = field(default_factory=list)     # DESI coadd/spectra FITS, MMU DESI
    redshifts: list[str] = field(default_factory=list)   # redrock/zbest FITS
    images: list[str] = field(default_factory=list)      # cutout FITS, Stein HDF5, MMU LS
    astroclip: list[str] = field(default_factory=list)   # AstroCLIP HDF5 or HF folder
    mmu: list[str] = field(default_factory=list)         # MMU folders (both parts)
    catalog: str | None = None                           # PROVABGS HDF5
    match_radius_arcsec: float = 1.0
    keep_unpaired: bool = False
    skip_bad: bool = False
    spectype: str | None = None                          # e.g. GALAXY
    zwarn_zero: bool = False
    require_redshift: bool = True
    shard_size: int = 256
    chunk: int = 64
    overwrite: bool = False
    progress: bool = True


# ----------------------------------------------------------------------------- inputs
def _expand(paths: list[str], patterns: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted({q for pat in patterns for q in p.rglob(pat)})
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def _h5_kind(path: Path) -> str:
    import h5py

    from galclip.data.mmu import mmu_layout

    def probe() -> str:
        with h5py.File(path, "r") as f:
            if kind := mmu_layout(f):
                return f"mmu-{kind}"
            if "images" in f and getattr(f["images"], "ndim", 0) == 4:
                return "stein"
            if any(k.isdigit() for k in f.keys()):
                return "astroclip-h5"
        raise ReaderError(path, "datasets", "not a known HDF5 layout (MMU, Stein, AstroCLIP)")
    return guarded(path, "HDF5", probe)


def classify_inputs(cfg: BuildConfig, rejects: RejectLog | None = None
                    ) -> list[tuple[str, Path]]:
    """(kind, path) for every input file, kinds from :data:`SPECTRUM_KINDS` etc. An HDF5 file
    of unknown or unreadable layout is an error, or a reject with a lenient ``rejects``."""
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    found: list[tuple[str, Path]] = []

    def h5(p: Path) -> None:
        try:
            found.append((_h5_kind(p), p))
        except ReaderError as e:
            rejects.add(e.path, e.field or "", f"unreadable file: {e.reason}")

    for fits_kind, paths, patterns in (
            ("desi", cfg.spectra, ("coadd-*.fits", "spectra-*.fits", "*.hdf5", "*.h5")),
            ("cutout", cfg.images, ("*.fits", "*.fits.fz", "*.hdf5", "*.h5"))):
        for p in _expand(paths, patterns):
            if ".fits" in p.name:
                found.append((fits_kind, p))
            else:
                h5(p)
    for p in _expand(cfg.mmu, ("*.hdf5", "*.h5")):
        h5(p)
    for p in map(Path, cfg.astroclip):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        found.append(("astroclip-h5" if p.suffix in (".h5", ".hdf5") else "astroclip-hf", p))
    return found




def build_fingerprint(cfg: BuildConfig, files: list[tuple[str, Path]]) -> str:
    """Identifies a build (options + inputs by path, size, mtime) so an interrupted one can
    resume: the same fingerprint replays the same rows in the same order."""
    opts = {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite", "progress")}
    paths = [p for _, p in files] + [Path(p) for p in cfg.redshifts] + (
        [Path(cfg.catalog)] if cfg.catalog else [])
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return hashlib.sha256(json.dumps([opts, stats], sort_keys=True).encode()).hexdigest()


def describe_inputs(files: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    """Manifest entries (kind, path, bytes, sha256) for every input file."""
    out = []
    for kind, p in files:
        parts = [q for q in sorted(p.rglob("*")) if q.is_file()] if p.is_dir() else [p]
        for q in parts:
            out.append({"kind": kind, "path": str(q.resolve()), "bytes": q.stat().st_size,
                        "sha256": sha256_file(q)})
    return out


# ----------------------------------------------------------------------------- readers
def iter_source(kind: str, path: Path, rejects: RejectLog, cfg: BuildConfig,
                redshifts=None) -> Iterator[Batch]:
    """Batches from one input file of a given kind."""
    from galclip.data import astroclip, desi, desi_tables, legacysurvey, mmu

    if kind == "desi" and desi_tables.is_flux_table_file(path):   # no ivar: estimated
        return desi_tables.iter_desi_table(path, redshifts, rejects, cfg.spectype,
                                           cfg.zwarn_zero, cfg.require_redshift)
    if kind == "desi":
        return desi.iter_desi_spectra(path, redshifts, rejects, cfg.chunk, cfg.spectype,
                                      cfg.zwarn_zero, cfg.require_redshift)
    readers = {"mmu-desi": mmu.iter_mmu_desi, "stein": legacysurvey.iter_stein_h5,
               "mmu-legacysurvey": mmu.iter_mmu_legacysurvey,
               "astroclip-h5": astroclip.iter_astroclip_h5,
               "astroclip-hf": astroclip.iter_astroclip_hf}
    if kind == "cutout":
        return legacysurvey.iter_cutout_fits([path], rejects, cfg.chunk)
    return readers[kind](path, rejects, chunk=cfg.chunk)


class ImageIndex:
    """Positions and ids of every input image (no pixels), for matching and later loading."""

    def __init__(self, files: list[tuple[str, Path]], rejects: RejectLog):
        self._files_seen = [p for _, p in files]
        parts = [self._index_file(i, kind, p, rejects) for i, (kind, p) in enumerate(files)]
        parts = [q for q in parts if q is not None and len(q["ra"])]
        cols = ("file", "row", "object_id", "ra", "dec", "from_tid")
        self.kinds = {p: k for k, p in files}
        self.cols = {c: np.concatenate([q[c] for q in parts]) if parts else np.zeros(0)
                     for c in cols}
        self.used = np.zeros(len(self.cols["ra"]), dtype=bool)
        self._coords = None
        tid = self.cols["object_id"].astype(np.int64)
        has_tid = np.flatnonzero(self.cols["from_tid"].astype(bool))   # ids that are TARGETIDs
        order = np.argsort(tid[has_tid], kind="stable")
        self._tid_sorted, self._tid_entry = tid[has_tid][order], has_tid[order]

    def __len__(self) -> int:
        return len(self.cols["ra"])

    @staticmethod
    def _index_file(fi: int, kind: str, path: Path, rejects: RejectLog) -> dict | None:
        try:
            meta = index_image_file(kind, path)
        except ReaderError as e:
            rejects.add(e.path, e.field or "", e.reason, e.row)
            return None
        keep = check_coordinates(path, meta["ra"], meta["dec"], meta["row"], meta["object_id"],
                                 rejects)
        meta = {k: v[keep] for k, v in meta.items()}
        meta["file"] = np.full(len(meta["ra"]), fi)
        return meta

    def _entry_of(self, targetid: int) -> int:
        """Index entry whose TARGETID is ``targetid`` (-1 if none); sorted arrays, not a dict,
        so the index costs ~40 bytes per image."""
        pos = int(np.searchsorted(self._tid_sorted, targetid))
        if pos < len(self._tid_sorted) and self._tid_sorted[pos] == targetid:
            return int(self._tid_entry[pos])
        return -1

    def coords(self):
        from astropy.coordinates import SkyCoord

        if self._coords is None:
            self._coords = SkyCoord(self.cols["ra"], self.cols["dec"], unit="deg")
        return self._coords

    def match(self, ids: np.ndarray, ra: np.ndarray, dec: np.ndarray, radius_arcsec: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image index (-1 if none), separation in arcsec, and method ('id'/'position'/'')."""
        from astropy.coordinates import SkyCoord, match_coordinates_sky

        n = len(ids)
        idx, sep, how = np.full(n, -1), np.full(n, np.nan), np.full(n, "", dtype=object)
        for i, t in enumerate(ids):
            j = self._entry_of(int(t))
            if j >= 0 and not self.used[j]:
                idx[i], how[i] = j, "id"
        todo = np.flatnonzero((idx < 0) & np.isfinite(ra) & np.isfinite(dec))
        if len(todo) and len(self):
            cand, d2, _ = match_coordinates_sky(SkyCoord(ra[todo], dec[todo], unit="deg"),
                                                self.coords(), storekdtree="_galclip_kdtree")
            for k, i in enumerate(todo):
                j = int(np.atleast_1d(cand)[k])
                if np.atleast_1d(d2.arcsec)[k] <= radius_arcsec and not self.used[j] \
                        and j not in idx:
                    idx[i], how[i] = j, "position"
        for i in np.flatnonzero(idx >= 0):
            self.used[idx[i]] = True
            sep[i] = _sep_arcsec(ra[i], dec[i], self.cols["ra"][idx[i]], self.cols["dec"][idx[i]])
        return idx, sep, how.astype(str)

    def load(self, which: np.ndarray, rejects: RejectLog) -> dict[int, dict[str, Any]]:
        """Pixels of the index entries ``which``: {entry: {image, image_ivar?, ...}}."""
        out: dict[int, dict[str, Any]] = {}
        files = self.cols["file"][which].astype(int)
        for fi in np.unique(files):
            entries = which[files == fi]
            path = self._files_seen[fi]
            rows = self.cols["row"][entries].astype(int)
            for e, got in zip(entries, load_image_rows(self.kinds[path], path, rows, rejects), strict=True):
                if got is not None:
                    out[int(e)] = got
        return out


def _pixels(image_row: dict[str, Any]) -> dict[str, Any]:
    """The image-side columns of a loaded image row (never its id or position)."""
    return {k: image_row[k] for k in ("image", "image_ivar", "image_resized") if k in image_row}


def _sep_arcsec(ra1, dec1, ra2, dec2) -> float:
    from astropy.coordinates import SkyCoord

    return float(SkyCoord(ra1, dec1, unit="deg").separation(
        SkyCoord(ra2, dec2, unit="deg")).arcsec)


def index_image_file(kind: str, path: Path) -> dict[str, np.ndarray]:
    """ids, positions and rows of one image file, reading no pixels."""
    from galclip.data import mmu
    from galclip.data.readers import ls_targetid, position_id

    if kind == "cutout":
        from astropy.io import fits
        from astropy.wcs import WCS

        hdr = guarded(path, "primary header", lambda: fits.getheader(path, 0))
        if "CRVAL1" not in hdr or hdr.get("NAXIS", 0) != 3:
            raise ReaderError(path, "primary header", "not a (bands, H, W) cutout with a WCS")
        w, h = hdr["NAXIS1"], hdr["NAXIS2"]
        ra, dec = guarded(path, "primary header WCS", lambda: WCS(hdr, naxis=2).all_pix2world(
            [[(w - 1) / 2, (h - 1) / 2]], 0)[0])
        tid = hdr.get("TARGETID")
        ids = np.array([int(tid)]) if tid is not None else position_id([ra], [dec])
        return {"row": np.zeros(1, np.int64), "object_id": ids, "ra": np.array([ra]),
                "dec": np.array([dec]), "from_tid": np.array([tid is not None])}
    import h5py

    def read() -> dict[str, np.ndarray]:
        with h5py.File(path, "r") as f:
            ra, dec = np.asarray(f["ra"][:], np.float64), np.asarray(f["dec"][:], np.float64)
            if kind == "stein":
                if all(k in f for k in ("release", "brickid", "objid")):
                    ids = ls_targetid(f["release"][:], f["brickid"][:], f["objid"][:])
                    return _meta(ids, ra, dec, True)
                return _meta(position_id(ra, dec), ra, dec, False)
            ids, from_tid = mmu._ids(path, np.asarray(f["object_id"][:]), ra, dec)
            return _meta(ids, ra, dec, from_tid)
    return guarded(path, "HDF5 ra/dec/object_id", read)


def _meta(ids, ra, dec, from_tid: bool) -> dict[str, np.ndarray]:
    return {"row": np.arange(len(ra), dtype=np.int64), "object_id": np.asarray(ids, np.int64),
            "ra": ra, "dec": dec, "from_tid": np.full(len(ra), from_tid)}


def load_image_rows(kind: str, path: Path, rows: np.ndarray, rejects: RejectLog
                    ) -> list[dict[str, Any] | None]:
    """Pixels of given rows of one image file (None where the row was rejected)."""
    from galclip.data import legacysurvey

    if kind == "cutout":
        try:
            return [legacysurvey.read_cutout_fits(path)]
        except ReaderError as e:
            rejects.add(e.path, e.field or "", e.reason, e.row)
            return [None]
    import h5py

    read_row = _stein_row if kind == "stein" else _mmu_ls_row
    with guarded(path, "HDF5", lambda: h5py.File(path, "r")) as f:   # one open per file
        got = {int(r): read_row(path, f, int(r), rejects) for r in np.unique(rows)}
    return [got.get(int(r)) for r in rows]


def _stein_row(path: Path, f, r: int, rejects: RejectLog) -> dict[str, Any] | None:
    from galclip.data.legacysurvey import stein_bands, stein_chunk

    b = stein_chunk(path, f, stein_bands(f)[0], r, r + 1, rejects)
    if not len(b["object_id"]):
        return None
    return {"image": b["image"][0], "image_resized": bool(b["image_resized"][0]),
            "redshift": float(b["redshift"][0])}


def _mmu_ls_row(path: Path, f, r: int, rejects: RejectLog) -> dict[str, Any] | None:
    from galclip.data.mmu import _ls_chunk

    b = _ls_chunk(path, f, r, r + 1, rejects)
    if not len(b["object_id"]):
        return None
    return {"image": b["image"][0], "image_ivar": b["image_ivar"][0],
            "image_resized": bool(b["image_resized"][0]),
            "source_object_id": str(b["source_object_id"][0])}


# ----------------------------------------------------------------------------- writing
class IdSet:
    """Ids written so far, compact for survey-sized builds: a sorted int64 array plus a small
    set of recent ids merged into it in blocks."""

    def __init__(self, block: int = 100_000):
        self.base = np.zeros(0, np.int64)
        self.recent: set[int] = set()
        self.block = block

    def __contains__(self, oid: int) -> bool:
        if oid in self.recent:
            return True
        pos = int(np.searchsorted(self.base, oid))
        return pos < len(self.base) and int(self.base[pos]) == oid

    def add(self, oid: int) -> None:
        self.recent.add(oid)
        if len(self.recent) >= self.block:
            self.base = np.union1d(self.base, np.fromiter(self.recent, np.int64))
            self.recent = set()


class ShardWriter:
    """Buffers rows and writes a shard every ``shard_size`` rows (null rows for absent arrays)."""

    def __init__(self, out: Path, columns: dict[str, tuple[Any, tuple[int, ...]]],
                 shard_size: int, state: ResumeState | None = None, done: list[dict[str, Any]] = ()):
        self.out, self.columns, self.shard_size = out, columns, shard_size
        self.state = state                                  # records the finished shards
        self.rows: list[dict[str, Any]] = []
        self.shards: list[dict[str, Any]] = list(done)     # finished by an interrupted run
        self.n_written = self.n_resumed = sum(s["n_rows"] for s in done)
        self._n_added = 0

    def add(self, row: dict[str, Any]) -> None:
        self._n_added += 1
        if self._n_added <= self.n_resumed:               # already in a finished shard
            return
        self.rows.append(row)
        if len(self.rows) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        cols = {name: self._column(name, fill, shape) for name, (fill, shape) in
                self.columns.items()}
        path = self.out / shard_name(len(self.shards))
        self.shards.append(write_shard(path, cols))
        self.n_written += len(self.rows)
        self.rows = []
        if self.state is not None:
            self.state.progress["shards"] = self.shards
            self.state.save()

    def _column(self, name: str, fill: Any, shape: tuple[int, ...]):
        vals = [r.get(name) for r in self.rows]
        if not shape:
            return np.array([fill if v is None else v for v in vals],
                            dtype=object if isinstance(fill, str) else type(fill))
        data = np.zeros((len(vals), *shape), np.float32)
        missing = np.zeros((len(vals), *shape), bool)
        for i, v in enumerate(vals):
            if v is None:
                missing[i] = True
            else:
                data[i] = v
        return np.ma.MaskedArray(data, mask=missing) if missing.any() else data


def output_columns(kinds: set[str], catalog: bool) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Columns of the built dataset: name -> (fill value for absent scalars, per-row shape)."""
    from galclip.data.provabgs import PROPERTY_COLUMNS

    cols: dict[str, tuple[Any, tuple[int, ...]]] = {
        "object_id": (np.int64(0), ()), "ra": (np.float64(np.nan), ()),
        "dec": (np.float64(np.nan), ()), "redshift": (np.float32(np.nan), ()),
        **{c: (None, REQUIRED_COLUMNS[c][1]) for c in input_columns(with_id=False)},
        **{flag: (np.bool_(False), ()) for flag in presence_columns()},
        "image_resized": (np.bool_(False), ()),
        "match": ("", ()), "match_sep_arcsec": (np.float32(np.nan), ()),
        "zwarn": (np.int64(-1), ()), "spectype": ("", ()),
        "source_spectrum": ("", ()), "source_image": ("", ()),
    }
    if "mmu-legacysurvey" in kinds:
        cols["image_ivar"] = (None, C.IMAGE_SHAPE)
    if kinds & set(PAIRED_KINDS):
        cols["split"] = ("", ())
    if "desi" in kinds:
        for c in ("flux_g", "flux_r", "flux_z", "fiber_flux_r"):
            cols[c] = (np.float32(np.nan), ())
        cols["ivar_estimated"] = (np.bool_(False), ())   # True: the file had no ivar
    if catalog:
        for c in PROPERTY_COLUMNS:
            cols[c] = (np.float32(np.nan), ())
    return cols


# ----------------------------------------------------------------------------- build
@dataclass
class BuildReport:
    rows_written: int = 0
    matched_by_id: int = 0
    matched_by_position: int = 0
    paired_inputs: int = 0
    unmatched_spectra: int = 0
    unmatched_images: int = 0
    written_spectrum_only: int = 0
    written_image_only: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    resumed_rows: int = 0
    ivar_estimated: int = 0   # spectra whose file had no ivar (estimated from the flux)


class _Builder:
    def __init__(self, cfg: BuildConfig):
        from galclip.data.desi import RedshiftTable
        from galclip.data.provabgs import PropertyCatalog

        self.cfg, self.out = cfg, Path(cfg.out)
        self.rejects = RejectLog(strict=not cfg.skip_bad)
        self.files = classify_inputs(cfg, self.rejects)
        if not self.files:
            raise ValueError("no input files: give --spectra, --images, --astroclip or --mmu")
        self.report = BuildReport()
        self.redshifts = RedshiftTable(_expand(cfg.redshifts, ("redrock-*.fits", "zbest-*.fits")),
                                       self.rejects)
        self.catalog = PropertyCatalog(cfg.catalog, self.rejects) if cfg.catalog else None
        kinds = {k for k, _ in self.files}
        self.fingerprint = build_fingerprint(cfg, self.files)
        self.columns = output_columns(kinds, bool(self.catalog))
        self.seen = IdSet()
        self.bar = None

    def _progress(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def run(self) -> dict[str, Any]:
        from tqdm import tqdm

        done = self._prepare_out()
        self.writer = ShardWriter(self.out, self.columns, self.cfg.shard_size, self.state, done)
        self.report.resumed_rows = self.writer.n_resumed
        image_files = [(k, p) for k, p in self.files if k in IMAGE_KINDS]
        self.index = ImageIndex(image_files, self.rejects)
        with tqdm(desc="build-dataset", unit=" obj", disable=not self.cfg.progress) as bar:
            self.bar = bar
            for kind, path in self.files:
                if kind in SPECTRUM_KINDS or kind in PAIRED_KINDS:
                    self._spectra_file(kind, path)
            self._unpaired_images()
        self.writer.flush()
        return self._finish()

    def _prepare_out(self) -> list[dict[str, Any]]:
        """Make the output folder; returns the shards an interrupted identical build finished."""
        self.state = ResumeState(self.out / STATE, "galclip build-dataset",
                                 {"fingerprint": self.fingerprint})
        remove_stale_temporaries(self.out)
        if self.out.exists() and any(self.out.iterdir()):
            if self.cfg.overwrite:
                shutil.rmtree(self.out)
            elif (self.out / STATE).exists() and not (self.out / MANIFEST).exists():
                return self._resume()
            else:
                raise FileExistsError(f"{self.out}: not empty; use --overwrite to replace it")
        self.out.mkdir(parents=True, exist_ok=True)
        return []

    def _resume(self) -> list[dict[str, Any]]:
        self.state = ResumeState.open(self.out / STATE, "galclip build-dataset",
                                      self.state.inputs,
                                      hint="rerun it unchanged to resume, or use --overwrite")
        done = []
        for entry in self.state.progress.get("shards", []):   # keep the intact prefix
            path = self.out / entry["file"]
            if not path.exists() or sha256_file(path) != entry["sha256"]:
                break
            done.append(entry)
        return done

    def _unique(self, oid: int, source: str, row: int) -> bool:
        if oid in self.seen:
            self.rejects.add(source, "object_id", f"duplicate object_id: {oid} already written", row, oid)
            return False
        self.seen.add(oid)
        return True

    def _spectra_file(self, kind: str, path: Path) -> None:
        """Stream one spectrum (or paired) file; with skip_bad an unreadable file is a reject."""
        try:
            for batch in iter_source(kind, path, self.rejects, self.cfg, self.redshifts):
                self._spectra_batch(kind, batch)
                self._progress(len(batch["object_id"]))
        except ReaderError as e:
            if not self.cfg.skip_bad:
                raise
            self.rejects.add(e.path, e.field or "", f"unreadable file: {e.reason}", e.row,
                             fatal=False)

    def _spectra_batch(self, kind: str, b: Batch) -> None:
        n = len(b["object_id"])
        if kind in PAIRED_KINDS:
            self.report.paired_inputs += n
            for i in range(n):
                self._emit(b, i, {"image": b["image"][i], "has_image": True, "match": "paired",
                                  "source_image": str(b["source"][i])})
            return
        idx, sep, how = self.index.match(b["object_id"], b["ra"], b["dec"],
                                         self.cfg.match_radius_arcsec)
        images = self.index.load(idx[idx >= 0], self.rejects) if (idx >= 0).any() else {}
        for i in range(n):
            img = images.get(int(idx[i])) if idx[i] >= 0 else None
            if img is None:
                self.report.unmatched_spectra += 1
                if not self.cfg.keep_unpaired:
                    self.rejects.add(str(b["source"][i]), "match", "unmatched spectrum: no "
                                     f"image by TARGETID or within {self.cfg.match_radius_arcsec}"
                                     " arcsec", int(b["row"][i]), int(b["object_id"][i]),
                                     fatal=False)
                    continue
                self.report.written_spectrum_only += 1
                self._emit(b, i, {"has_image": False})
                continue
            self.report.matched_by_id += how[i] == "id"
            self.report.matched_by_position += how[i] == "position"
            src = self.index._files_seen[int(self.index.cols["file"][idx[i]])].name
            self._emit(b, i, {**_pixels(img), "has_image": True, "match": how[i],
                              "match_sep_arcsec": sep[i], "source_image": src})

    def _emit(self, b: Batch, i: int, extra: dict[str, Any]) -> None:
        oid = int(b["object_id"][i])
        if not self._unique(oid, str(b["source"][i]), int(b["row"][i])):
            return
        row = {k: v[i] for k, v in b.items() if k in self.writer.columns}
        row.update(extra)
        row.update({"has_spectrum": True, "source_spectrum": str(b["source"][i])})
        self.report.ivar_estimated += bool(row.get("ivar_estimated", False))
        self._add(row)

    def _add(self, row: dict[str, Any]) -> None:
        if self.catalog is not None:
            props = self.catalog.columns_for(np.array([row["object_id"]]))
            row.update({k: v[0] for k, v in props.items()})
            j = self.catalog.lookup(np.array([row["object_id"]]))[0]
            if j >= 0 and not np.isfinite(row.get("ra", np.nan)):
                row["ra"], row["dec"] = self.catalog.data["ra"][j], self.catalog.data["dec"][j]
        self.writer.add(row)

    def _unpaired_images(self) -> None:
        left = np.flatnonzero(~self.index.used)
        self.report.unmatched_images = len(left)
        if not self.cfg.keep_unpaired:
            for j in left:
                self.rejects.add(str(self.index._files_seen[int(self.index.cols["file"][j])]),
                                 "match", "unmatched image: no spectrum matched it",
                                 int(self.index.cols["row"][j]),
                                 int(self.index.cols["object_id"][j]), fatal=False)
            return
        for start in range(0, len(left), self.cfg.chunk):
            part = left[start:start + self.cfg.chunk]
            images = self.index.load(part, self.rejects)
            for j in part:
                if int(j) not in images:
                    continue
                oid = int(self.index.cols["object_id"][j])
                src = self.index._files_seen[int(self.index.cols["file"][j])].name
                if not self._unique(oid, src, int(self.index.cols["row"][j])):
                    continue
                self.report.written_image_only += 1
                self._add({**_pixels(images[int(j)]), "redshift": images[int(j)].get("redshift"),
                           "object_id": oid, "ra": self.index.cols["ra"][j],
                           "dec": self.index.cols["dec"][j], "has_image": True,
                           "has_spectrum": False, "match": "", "source_image": src})
            self._progress(len(part))

    def _finish(self) -> dict[str, Any]:
        self.rejects.write_csv(self.out / "rejects.csv")
        self.report.rows_written = self.writer.n_written
        self.report.rejected = self.rejects.counts()
        if not self.writer.shards:
            raise ValueError(f"{self.out}: no rows to write (see {self.out / 'rejects.csv'}: "
                             f"{self.report.rejected})")
        manifest = write_manifest(self.out, self.writer.shards, Provenance(
            command="galclip build-dataset", config=asdict(self.cfg),
            inputs=describe_inputs(self.files)), extra={"build": asdict(self.report),
                                                        "notes": self._notes(),
                                                        "build_fingerprint": self.fingerprint})
        self.state.clear()  # the manifest's build_fingerprint records the finished build
        return {"manifest": manifest, "report": self.report}

    def _notes(self) -> dict[str, Any]:
        from galclip.data import astroclip

        notes: dict[str, Any] = {"match": f"TARGETID first, else nearest image within "
                                          f"{self.cfg.match_radius_arcsec} arcsec (astropy)",
                                 "rejects": "rejects.csv"}
        kinds = {k for k, _ in self.files}
        if kinds & set(PAIRED_KINDS):
            notes["astroclip"] = astroclip.NOTES
        if "stein" in kinds:
            notes["stein_bands"] = "published layout g, r, z (ssl-legacysurvey README) unless " \
                                   "the file has a 'bands' attribute"
        if self.catalog is not None:
            notes["provabgs"] = {"log_ssfr": "log10 AVG_SFR - log_mstar (AstroCLIP divides SFR "
                                             "by Z_MW instead; not comparable)",
                                 "unavailable": self.catalog.data["unavailable"]}
        return notes


def build_dataset(cfg: BuildConfig) -> dict[str, Any]:
    """Build a galclip dataset; returns {'manifest', 'report'}. Raises on bad input unless
    ``cfg.skip_bad`` (then bad rows go to ``rejects.csv``)."""
    if cfg.match_radius_arcsec <= 0:
        raise ValueError(f"match radius must be positive, got {cfg.match_radius_arcsec}")
    if cfg.shard_size < 1 or cfg.chunk < 1:
        raise ValueError("shard size and chunk must be at least 1")
    if (Path(cfg.out) / MANIFEST).exists() and not cfg.overwrite:
        return _finished_build(cfg)
    return _Builder(cfg).run()


def _finished_build(cfg: BuildConfig) -> dict[str, Any]:
    """The same build, already finished (perhaps killed just after its manifest): a no-op that
    returns it; a different build in that folder is an error."""
    from galclip.data.format import read_manifest

    manifest = read_manifest(Path(cfg.out))
    files = classify_inputs(cfg, RejectLog(strict=not cfg.skip_bad))
    if manifest.get("build_fingerprint") != build_fingerprint(cfg, files):
        raise FileExistsError(f"{cfg.out}: already holds a dataset built from other inputs or "
                              "options; use --overwrite or another --out")
    remove_stale_temporaries(Path(cfg.out))
    (Path(cfg.out) / STATE).unlink(missing_ok=True)
    return {"manifest": manifest, "report": BuildReport(**manifest["build"]), "resumed": True}
