"""The AstroCLIP dataset (Parker et al. 2024): the original HDF5 file and its Hugging Face forms.

Original file (``astroclip_desi*.h5``, written by AstroCLIP's ``export_data.py``): groups
``"0"`` ... ``"9"``, each with ``images`` (N, 152, 152, 3), ``spectra`` (N, 7781, 1),
``redshifts`` (N,), ``targetids`` (N,). AstroCLIP's train/test split is the first 80 % / last
20 % of each group (``int(0.8 * N)``); it is kept in a ``split`` column.

Hugging Face form (``datasets`` Parquet shards, or a ``save_to_disk`` folder of Arrow stream
files): columns ``image`` (152, 152, 3), ``spectrum`` (7781, 1), ``redshift``, ``targetid``;
split names come from the shard names (``train-*``/``test-*``) or split folders.

Two conversions happen here:

* Layout. ``export_data.py`` built each image as ``stein_image.T`` from the Stein et al. cube
  (3, y, x), so the stored array is (x, y, band), not (y, x, band). The exact inverse is a
  full transpose, ``img.T`` -> (band, y, x), which restores the Stein/viewer orientation
  (a plain H,W,C -> C,H,W move would mirror every galaxy about its diagonal).
* Noise. The dataset has no inverse variance: ``spectrum_ivar`` is 1 where the flux is finite
  and 0 elsewhere; the manifest records this (see :data:`NOTES`).

Ingest checks (ranges in :mod:`galclip.data.readers`; a bad row is a reject naming file,
dataset, row and TARGETID, an error when strict): image pixels finite with |pixel| <=
``IMAGE_LIMIT`` nanomaggies, finite flux within +-``FLUX_LIMIT``, redshift finite in
``REDSHIFT_RANGE``. The files carry no positions (``ra``, ``dec`` are NaN).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.data.readers import (
    Batch,
    ReaderError,
    RejectLog,
    guarded,
    guarded_iter,
    image_problem,
    iter_chunks,
    numeric_column,
    open_h5,
    redshift_problem,
    reject_rows,
    spectrum_problem,
)

TRAIN_FRACTION = 0.8
IMAGE_HWC = (C.IMAGE_SIZE, C.IMAGE_SIZE, len(C.BANDS))
NOTES = {
    "spectrum_ivar": "AstroCLIP files carry no inverse variance: ivar = 1 where flux is finite, "
                     "0 elsewhere",
    "image_layout": "AstroCLIP stores stein_cube.T (x, y, band); galclip applies .T again to "
                    "get (band, y, x)",
    "split": "AstroCLIP split kept: first 80 % of each HDF5 group = train, last 20 % = test",
}


def astroclip_image_to_chw(image: np.ndarray) -> np.ndarray:
    """(..., 152, 152, 3) AstroCLIP layout (x, y, band) -> (..., 3, 152, 152) (band, y, x)."""
    return np.swapaxes(image, -1, -3)


def spectrum_with_ivar(flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 7781) flux with NaN/inf set to 0, and ivar = 1 where the flux was finite."""
    finite = np.isfinite(flux)
    return np.where(finite, flux, 0).astype(np.float32), finite.astype(np.float32)


def _rows_batch(path: Path, images: np.ndarray, spectra: np.ndarray, z: np.ndarray,
                tid: np.ndarray, rows: np.ndarray, split: np.ndarray) -> Batch:
    if images.shape[1:] != IMAGE_HWC:
        raise ReaderError(path, "images", f"row shape {images.shape[1:]}, expected {IMAGE_HWC}")
    if spectra.ndim == 3 and spectra.shape[2] == 1:
        spectra = spectra[:, :, 0]
    if spectra.shape[1:] != (C.N_WAVE,):
        raise ReaderError(path, "spectra", f"row shape {spectra.shape[1:]}, expected "
                          f"({C.N_WAVE},) or ({C.N_WAVE}, 1)")
    flux, ivar = spectrum_with_ivar(spectra)
    return {"object_id": tid.astype(np.int64), "row": rows.astype(np.int64),
            "ra": np.full(len(tid), np.nan), "dec": np.full(len(tid), np.nan),
            "redshift": z.astype(np.float32),
            "image": astroclip_image_to_chw(images.astype(np.float32)),
            "spectrum_flux": flux, "spectrum_ivar": ivar, "split": split,
            "source": np.full(len(tid), path.name)}


#: the source names of (image, spectrum, redshift) in each form, for rejects
H5_NAMES = ("images", "spectra", "redshifts")
HF_NAMES = ("image", "spectrum", "redshift")


def _check_rows(path: Path, batch: Batch, rejects: RejectLog, names: tuple[str, str, str]
                ) -> Batch:
    """Drop (and report) rows with impossible pixels, flux or redshift."""
    image, spectrum, redshift = names
    problems = [image_problem(batch["image"][i], image) or spectrum_problem(
        batch["spectrum_flux"][i], batch["spectrum_ivar"][i], batch["spectrum_ivar"][i] > 0,
        (spectrum, spectrum)) or redshift_problem(batch["redshift"][i], redshift)
        for i in range(len(batch["object_id"]))]
    keep = reject_rows(path, problems, batch["row"], batch["object_id"], rejects)
    return {k: v[keep] for k, v in batch.items()}


# ----------------------------------------------------------------------------- HDF5
def iter_astroclip_h5(path: str | Path, rejects: RejectLog | None = None,
                      chunk: int = 64) -> Iterator[Batch]:
    """Stream the original AstroCLIP HDF5 file group by group, ``chunk`` rows at a time."""
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    yield from guarded_iter(path, "HDF5", _iter_h5(path, rejects, chunk))


def _iter_h5(path: Path, rejects: RejectLog, chunk: int) -> Iterator[Batch]:
    f = open_h5(path)
    try:
        groups = sorted((k for k in f.keys() if k.isdigit()), key=int)
        if not groups:
            raise ReaderError(path, "groups", "no numbered groups ('0'...'9'): not an "
                              "AstroCLIP file")
        offset = 0
        for g in groups:
            yield from _iter_group(path, f[g], g, offset, rejects, chunk)
            offset += len(f[g]["targetids"])
    finally:
        f.close()


def _iter_group(path: Path, grp, name: str, offset: int, rejects: RejectLog,
                chunk: int) -> Iterator[Batch]:
    for key in ("images", "spectra", "redshifts", "targetids"):
        if key not in grp:
            raise ReaderError(path, f"group '{name}' dataset '{key}'", "missing")
    n = len(grp["targetids"])
    for key in ("images", "spectra", "redshifts"):
        if len(grp[key]) != n:
            raise ReaderError(path, f"group '{name}' dataset '{key}'", f"{len(grp[key])} rows, "
                              f"'targetids' has {n}")
    n_train = int(TRAIN_FRACTION * n)
    for start, stop in iter_chunks(n, chunk):
        def read(key: str, start=start, stop=stop) -> np.ndarray:
            field = f"group '{name}' dataset '{key}'"
            return numeric_column(path, field, guarded(path, field, lambda: np.asarray(
                grp[key][start:stop])), None)
        rows = np.arange(start, stop)
        split = np.where(rows < n_train, "train", "test")
        batch = _rows_batch(path, read("images"), read("spectra"), read("redshifts"),
                            read("targetids"), rows + offset, split)
        batch = _check_rows(path, batch, rejects, H5_NAMES)
        if len(batch["object_id"]):
            yield batch


# ----------------------------------------------------------------------------- Hugging Face
def nested_to_numpy(path: Path, name: str, col, shape: tuple[int, ...]) -> np.ndarray:
    """A nested Arrow list column (rows of lists of lists ...) -> numpy (rows, *shape); the
    length of every list at every level is checked, so a wrong layout is an error."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.ExtensionArray):
        col = col.storage
    arr, rows = col, len(col)
    for level, size in enumerate(shape):
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)
                or pa.types.is_fixed_size_list(arr.type)):
            raise ReaderError(path, f"column '{name}'", f"nesting depth {level}, expected "
                              f"{len(shape)} for shape {shape}")
        if arr.null_count:
            raise ReaderError(path, f"column '{name}'", "null entries")
        lengths = np.asarray(arr.value_lengths()) if not pa.types.is_fixed_size_list(arr.type) \
            else np.full(len(arr), arr.type.list_size)
        if len(lengths) and (lengths != size).any():
            bad = int(np.flatnonzero(lengths != size)[0])
            raise ReaderError(path, f"column '{name}'", f"axis {level} has length "
                              f"{int(lengths[bad])}, expected {size} (shape {shape})",
                              bad // max(1, int(np.prod(shape[:level]))))
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).astype(np.float32).reshape((rows, *shape))


HF_COLUMNS = ("image", "spectrum", "redshift", "targetid")


def hf_files(root: str | Path) -> list[tuple[Path, str]]:
    """(file, split) pairs of a Hugging Face AstroCLIP copy: Parquet shards or save_to_disk."""
    root = Path(root)
    if root.is_file():
        return [(root, _split_of(root))]
    if (root / "dataset_dict.json").exists():
        splits = json.loads((root / "dataset_dict.json").read_text()).get("splits", [])
        return [(p, s) for s in splits for p, _ in hf_files(root / s)]
    if (root / "state.json").exists():
        state = json.loads((root / "state.json").read_text())
        split = state.get("_split") or _split_of(root)
        return [(root / d["filename"], split) for d in state.get("_data_files", [])]
    files = sorted(root.rglob("*.parquet")) or sorted(root.rglob("*.arrow"))
    if not files:
        raise ReaderError(root, None, "no Parquet or Arrow files (expected a Hugging Face "
                          "AstroCLIP copy)")
    return [(p, _split_of(p)) for p in files]


def _split_of(path: Path) -> str:
    for part in [path.stem, *reversed(path.parent.parts)]:
        for s in ("train", "test", "validation", "val"):
            if part.startswith(s) or part.split("-")[0] == s:
                return "val" if s == "validation" else s
    return ""


def _hf_batches(path: Path, chunk: int) -> Iterator:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        pf = guarded(path, "Parquet", lambda: pq.ParquetFile(path))
        yield from pf.iter_batches(batch_size=chunk, columns=list(HF_COLUMNS))
        return
    reader = guarded(path, "Arrow stream", lambda: pa.ipc.open_stream(pa.memory_map(str(path))))
    for batch in reader:
        for start, stop in iter_chunks(batch.num_rows, chunk):
            yield batch.slice(start, stop - start)


def iter_astroclip_hf(root: str | Path, rejects: RejectLog | None = None,
                      chunk: int = 64) -> Iterator[Batch]:
    """Stream the Hugging Face form of AstroCLIP (Parquet shards or a save_to_disk folder)."""
    rejects = rejects if rejects is not None else RejectLog(strict=True)
    for path, split in hf_files(root):
        offset = 0
        batches = _hf_batches(path, chunk)
        while True:
            rb = guarded(path, "record batch", lambda it=batches: next(it, None))
            if rb is None:
                break
            names = rb.schema.names
            for c in HF_COLUMNS:
                if c not in names:
                    raise ReaderError(path, f"column '{c}'", f"missing; has {names}")
            n = rb.num_rows
            spectra = nested_to_numpy(path, "spectrum", rb.column("spectrum"), (C.N_WAVE, 1))
            images = nested_to_numpy(path, "image", rb.column("image"), IMAGE_HWC)
            batch = _rows_batch(path, images, spectra,
                                rb.column("redshift").to_numpy(zero_copy_only=False),
                                rb.column("targetid").to_numpy(zero_copy_only=False),
                                np.arange(offset, offset + n), np.full(n, split))
            offset += n
            batch = _check_rows(path, batch, rejects, HF_NAMES)
            if len(batch["object_id"]):
                yield batch
