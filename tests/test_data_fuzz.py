"""Corrupted copies of the real DESI files: every outcome is a clean error or a reported reject."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from galclip import conventions as C
from galclip.data.build import BuildConfig, build_dataset
from galclip.data.desi import read_desi_spectra
from galclip.data.format import DatasetError
from galclip.data.readers import RejectLog

TAG = "4-80613-thru20210324"


def _corruptions(data: bytes, rng: np.random.Generator):
    n = len(data)
    for frac in (0.001, 0.02, 0.2, 0.5, 0.9, 0.999):                # truncated files
        yield f"truncate-{frac}", data[: int(n * frac)]
    for k in range(14):                                               # flipped bytes
        b = bytearray(data)
        # half in the headers / table region (first 40 %), half anywhere
        hi = int(n * 0.4) if k % 2 == 0 else n
        for pos in rng.integers(0, hi, size=1 + k % 4):
            b[int(pos)] ^= int(rng.integers(1, 256))
        yield f"flip-{k}", bytes(b)
    for k in range(4):                                                # zeroed / garbage blocks
        b = bytearray(data)
        start = int(rng.integers(0, n - 4096))
        b[start:start + 4096] = bytes(4096) if k % 2 == 0 else rng.bytes(4096)
        yield f"block-{k}", bytes(b)


def _check_outcome(batch, rejects):
    """A successful read must still honour the dataset contract."""
    if batch:
        assert batch["spectrum_flux"].shape[1:] == (C.N_WAVE,)
        assert np.isfinite(batch["spectrum_flux"]).all()
        assert (batch["spectrum_ivar"] >= 0).all() and np.isfinite(batch["spectrum_ivar"]).all()
    for r in rejects.items:
        assert r.file and r.reason


@pytest.mark.parametrize("which", ["coadd", "redrock"])
def test_corrupted_desi_files_fail_cleanly(real_data, tmp_path, which):
    src = {"coadd": real_data / "desi" / f"coadd-{TAG}.fits",
           "redrock": real_data / "desi" / f"redrock-{TAG}.fits"}
    data = src[which].read_bytes()
    rng = np.random.default_rng(7 if which == "coadd" else 8)
    outcomes = {"ok": 0, "error": 0}
    for name, blob in _corruptions(data, rng):
        files = {k: tmp_path / f"{name}-{v.name}" for k, v in src.items()}
        for k, v in src.items():
            shutil.copy(v, files[k]) if k != which else files[k].write_bytes(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                batch, rejects = read_desi_spectra(files["coadd"], [files["redrock"]],
                                                   rejects=RejectLog(strict=False))
            except DatasetError as e:     # ReaderError: must name the corrupted file
                assert files[which].name in str(e) or files["coadd"].name in str(e), (name, e)
                outcomes["error"] += 1
                continue
        _check_outcome(batch, rejects)
        outcomes["ok"] += 1
    assert outcomes["error"] >= 6          # at least every truncation is caught
    assert sum(outcomes.values()) == 24


def test_build_with_skip_bad_on_corrupted_copy_reports_or_fails_cleanly(real_data, tmp_path):
    data = (real_data / "desi" / f"coadd-{TAG}.fits").read_bytes()
    rr = real_data / "desi" / f"redrock-{TAG}.fits"
    good = real_data / "desi" / "coadd-special-dark-27247.fits"
    rng = np.random.default_rng(11)
    for i, (name, blob) in enumerate(_corruptions(data, rng)):
        bad = tmp_path / f"coadd-{name}.fits"
        bad.write_bytes(blob)
        cfg = BuildConfig(out=str(tmp_path / f"out{i}"), spectra=[str(bad), str(good)],
                          redshifts=[str(rr), str(real_data / "desi" /
                                                      "redrock-special-dark-27247.fits")],
                          keep_unpaired=True, skip_bad=True, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                report = build_dataset(cfg)["report"]
            except DatasetError as e:
                assert bad.name in str(e)
                continue
        # the good file always survives; the corrupted one is written, or rejected with a reason
        assert report.rows_written in (1, 2)
        text = (tmp_path / f"out{i}" / "rejects.csv").read_text()
        assert report.rows_written == 2 or bad.name in text
