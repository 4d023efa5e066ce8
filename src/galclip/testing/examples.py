"""Small files of every non-DESI reader format, written as their producers write them, and one
reader call per format: for the reader tests and the reliability campaign
(``benchmarks/reliability.py``), which corrupt them and check what the readers make of it.

:data:`TARGETS` lists, per format, the fields whose values the checks of
:mod:`galclip.data.readers` cover, with the kind of impossible value
(:data:`galclip.testing.corrupt.IMPOSSIBLE`) each may be given.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.data.readers import Batch, RejectLog

FORMATS = ("cutout", "stein", "mmu-legacysurvey", "mmu-desi", "astroclip-h5", "provabgs")
#: format -> {field: kind of impossible value}; a field is an HDF5 dataset, or for cutouts
#: "data" (the cube) or a header card
TARGETS = {
    "cutout": {"data": "pixel", "CRVAL2": "header-dec"},
    "stein": {"images": "pixel", "ra": "ra", "dec": "dec", "z_spec": "z_spec"},
    "mmu-legacysurvey": {"image_array": "pixel", "image_ivar": "ivar", "ra": "ra", "dec": "dec"},
    "mmu-desi": {"spectrum_flux": "flux", "spectrum_ivar": "ivar", "ra": "ra", "dec": "dec",
                 "Z": "redshift"},
    "astroclip-h5": {"0/images": "pixel", "1/spectra": "finite-flux", "0/redshifts": "redshift"},
    "provabgs": {"LOG_MSTAR": "log_mstar", "AVG_SFR": "sfr", "Z_MW": "z_mw",
                 "TAGE_MW": "tage_mw", "ra": "ra", "dec": "dec", "Z_HP": "redshift"},
}


def write_example(fmt: str, path: str | Path, n: int = 3, seed: int = 0) -> Path:
    """A clean file of format ``fmt`` with ``n`` objects (cutouts hold one)."""
    writer = {"cutout": _cutout, "stein": write_stein_h5, "mmu-legacysurvey":
              write_mmu_legacysurvey, "mmu-desi": write_mmu_desi,
              "astroclip-h5": write_astroclip_h5, "provabgs": write_provabgs}[fmt]
    rng = np.random.default_rng(seed)
    writer(Path(path), n, rng)
    return Path(path)


def read_example(fmt: str, path: str | Path, rejects: RejectLog) -> Batch:
    """Every row the reader of ``fmt`` gives for ``path``, concatenated ({} if none)."""
    from galclip.data import astroclip, legacysurvey, mmu, provabgs

    if fmt == "provabgs":
        out = provabgs.read_provabgs(path, rejects)
        return {k: v for k, v in out.items() if k != "unavailable"}
    iterate = {"cutout": lambda p, r: legacysurvey.iter_cutout_fits([p], r),
               "stein": legacysurvey.iter_stein_h5, "mmu-legacysurvey": mmu.iter_mmu_legacysurvey,
               "mmu-desi": mmu.iter_mmu_desi, "astroclip-h5": astroclip.iter_astroclip_h5}[fmt]
    batches = list(iterate(Path(path), rejects))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}


def field_shapes(fmt: str, path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{field: (kind, shape)} of the :data:`TARGETS` of a clean file, for
    :func:`galclip.testing.corrupt.value_variants`."""
    if fmt == "cutout":
        from astropy.io import fits

        return {"data": ("pixel", fits.getdata(path).shape), "CRVAL2": ("header-dec", ())}
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (kind, f[k].shape) for k, kind in TARGETS[fmt].items()}


def set_value(fmt: str, path: str | Path, field: str, index: tuple[int, ...], value: float
              ) -> None:
    """Write one element of a field in place (a cutout's card or pixel, an HDF5 element)."""
    if fmt == "cutout":
        from astropy.io import fits

        with fits.open(path, mode="update") as hdul:
            if field == "data":
                hdul[0].data[index] = value
            else:
                hdul[0].header[field] = value
        return
    import h5py

    with h5py.File(path, "a") as f:
        f[field][index] = value


def _images(rng: np.random.Generator, n: int, bands: int = 3, size: int = C.IMAGE_SIZE):
    """Sky-subtracted images in nanomaggies: noise of 0.01 plus a faint blob."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = 2.0 * np.exp(-(xx ** 2 + yy ** 2) / (2 * 4.0 ** 2))
    return (blob + 0.01 * rng.normal(size=(n, bands, size, size))).astype(np.float32)


def _cutout(path: Path, n: int, rng: np.random.Generator) -> None:
    from galclip.data.legacysurvey import write_cutout_fits

    write_cutout_fits(path, _images(rng, 1)[0], float(rng.uniform(0, 360)),
                      float(rng.uniform(-20, 60)))


def write_stein_h5(path: Path, n: int, rng: np.random.Generator) -> None:
    """As ssl-legacysurvey's ``images_npix152_*.h5``: images g, r, z and sweep columns."""
    import h5py

    with h5py.File(path, "w") as f:
        f["images"] = _images(rng, n)
        f["ra"], f["dec"] = rng.uniform(0, 360, n), rng.uniform(-20, 60, n)
        f["release"], f["objid"] = np.full(n, 9010), rng.integers(0, 5000, n)
        f["brickid"] = rng.integers(1, 600000, n)
        f["z_spec"] = np.where(np.arange(n) % 3 == 1, -99.0, rng.uniform(0.01, 0.5, n))


def write_mmu_legacysurvey(path: Path, n: int, rng: np.random.Generator,
                           band_order=("des-g", "des-r", "des-i", "des-z")) -> None:
    """As MultimodalUniverse scripts/legacysurvey/build_parent_sample.py writes it."""
    import h5py

    with h5py.File(path, "w") as f:
        f["object_id"] = np.array([f"1054p567-{i}".encode() for i in range(n)],
                                  dtype=h5py.string_dtype("utf-8", 16))
        f["ra"], f["dec"] = rng.uniform(0, 360, n), rng.uniform(-20, 60, n)
        f["image_array"] = _images(rng, n, 4, 160)
        f["image_ivar"] = rng.uniform(1e3, 2e4, size=(n, 4, 160, 160)).astype(np.float32)
        f["image_band"] = np.array([[b.encode() for b in band_order]] * n,
                                   dtype=h5py.string_dtype("utf-8", 5))
        f["image_mask"] = np.zeros((n, 160, 160), bool)
        f["image_psf_fwhm"] = np.ones((n, 4), np.float32)
        f["image_scale"] = np.full((n, 4), 0.262, np.float32)


def write_mmu_desi(path: Path, n: int, rng: np.random.Generator,
                   targetid: np.ndarray | None = None) -> None:
    """As MultimodalUniverse scripts/desi/build_parent_sample.py writes it (the first 10
    pixels masked)."""
    import h5py

    tid = np.arange(n, dtype=np.int64) + 39633345008634465 if targetid is None else targetid
    mask = np.zeros((n, C.N_WAVE), bool)
    mask[:, :10] = True
    with h5py.File(path, "w") as f:
        f["TARGETID"] = f["object_id"] = np.asarray(tid, np.int64)
        f["ra"], f["dec"] = rng.uniform(0, 360, n), rng.uniform(-20, 60, n)
        f["Z"] = rng.uniform(0.01, 0.6, n)
        f["ZWARN"] = np.zeros(n, np.int64)
        f["SPECTYPE"] = np.array([b"GALAXY"] * n)
        f["spectrum_lambda"] = np.repeat(C.wavelength_grid()[None].astype(np.float32), n, 0)
        f["spectrum_flux"] = rng.normal(size=(n, C.N_WAVE)).astype(np.float32)
        f["spectrum_ivar"] = rng.uniform(1, 2, size=(n, C.N_WAVE)).astype(np.float32)
        f["spectrum_mask"] = mask
        f["spectrum_lsf_sigma"] = np.ones((n, C.N_WAVE), np.float32)


def write_astroclip_h5(path: Path, n: int, rng: np.random.Generator) -> None:
    """As AstroCLIP's export_data.py: two groups, images = stein.T (152, 152, 3), spectra
    (7781, 1)."""
    import h5py

    with h5py.File(path, "w") as f:
        for g in range(2):
            grp = f.create_group(str(g))
            grp["images"] = np.stack([c.T for c in _images(rng, n)])
            grp["spectra"] = rng.normal(size=(n, C.N_WAVE, 1)).astype(np.float32)
            grp["redshifts"] = rng.uniform(0.01, 0.6, n)
            grp["targetids"] = np.arange(n) + 10 ** 15 + g * n


def write_provabgs(path: Path, n: int, rng: np.random.Generator) -> None:
    """The one-dataset-per-column form (MMU / AstroCLIP); row 1 has no fit (-999)."""
    import h5py

    with h5py.File(path, "w") as f:
        f["object_id"] = np.arange(n, dtype=np.int64) + 39633345008634465
        f["ra"], f["dec"] = rng.uniform(0, 360, n), rng.uniform(-20, 60, n)
        f["Z_HP"] = rng.uniform(0.01, 0.5, n)
        f["LOG_MSTAR"] = np.where(np.arange(n) == 1, -999.0, rng.uniform(8, 12, n))
        f["AVG_SFR"] = rng.uniform(0.01, 20, n)
        f["Z_MW"] = rng.uniform(0.002, 0.03, n)
        f["TAGE_MW"] = rng.uniform(1, 12, n)


def implausible(batch: Batch) -> str | None:
    """The first value of a reader's output outside the ranges of :mod:`galclip.data.readers`
    (NaN stands for "none" in ra/dec, redshift and properties), or None."""
    from galclip.data.provabgs import PROPERTY_RANGES
    from galclip.data.readers import (
        IMAGE_IVAR_LIMIT,
        coordinate_problem,
        image_problem,
        ivar_problem,
        range_problem,
        redshift_problem,
        spectrum_problem,
    )

    logs = {"log_mstar": PROPERTY_RANGES["mstar"], "tage_mw": PROPERTY_RANGES["tage_mw"],
            "log_sfr": (-np.inf, np.log10(PROPERTY_RANGES["sfr"][1])),
            "logz_mw": tuple(np.log10(PROPERTY_RANGES["z_mw"]))}
    n = len(next(iter(batch.values()), []))
    for i in range(n):
        def has(k: str, i: int = i) -> bool:
            return k in batch and not np.isnan(batch[k][i])
        problems = [
            coordinate_problem(batch["ra"][i], batch["dec"][i]) if has("ra") or has("dec")
            else None,
            *(redshift_problem(batch[k][i], k) for k in ("redshift", "z_hp") if has(k)),
            image_problem(batch["image"][i]) if "image" in batch else None,
            ivar_problem(batch["image_ivar"][i], "image_ivar", IMAGE_IVAR_LIMIT)
            if "image_ivar" in batch else None,
            spectrum_problem(batch["spectrum_flux"][i], batch["spectrum_ivar"][i],
                             batch["spectrum_ivar"][i] > 0) if "spectrum_flux" in batch else None,
            *(range_problem(k, batch[k][i], lo, hi, "bad property")
              for k, (lo, hi) in logs.items() if has(k))]
        if problem := next((p for p in problems if p), None):
            return f"row {i}: {problem[1]}"
    return None
