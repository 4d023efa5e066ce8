"""Corrupted copies of the real DESI files: every outcome is a clean error, a reported reject or
the clean file's exact output — never a traceback, never silently different data."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from galclip.data.build import BuildConfig, build_dataset
from galclip.data.desi import REDSHIFT_RANGE, read_desi_spectra
from galclip.data.format import DatasetError
from galclip.data.readers import RejectLog

TAG = "4-80613-thru20210324"
EXACT = ("object_id", "ra", "dec", "spectrum_flux", "spectrum_ivar", "flux_g", "flux_r")


def corruptions(data: bytes, rng: np.random.Generator, n_flips: int = 14):
    """Truncations, flipped bytes (half in the first 40 %: headers and tables), zeroed and
    garbage blocks: (name, bytes)."""
    n = len(data)
    for frac in (0.001, 0.02, 0.2, 0.5, 0.9, 0.999):
        yield f"truncate-{frac}", data[: int(n * frac)]
    for k in range(n_flips):
        b = bytearray(data)
        hi = int(n * 0.4) if k % 2 == 0 else n
        for pos in rng.integers(0, hi, size=1 + k % 4):
            b[int(pos)] ^= int(rng.integers(1, 256))
        yield f"flip-{k}", bytes(b)
    for k in range(4):
        b = bytearray(data)
        start = int(rng.integers(0, n - 4096))
        b[start:start + 4096] = bytes(4096) if k % 2 == 0 else rng.bytes(4096)
        yield f"block-{k}", bytes(b)


def classify(clean: dict, batch: dict, rejects: RejectLog, bad_name: str, which: str) -> str:
    """'reject', 'same' or 'undetectable' (redrock has no checksum: a plausible changed Z);
    fails the test on silently wrong data."""
    if rejects.items:
        assert all(r.file and r.reason for r in rejects.items)
        assert any(bad_name in r.file for r in rejects.items), rejects.items
        return "reject"
    assert batch, "no rows and no reject"
    for k in EXACT:
        np.testing.assert_array_equal(batch[k], clean[k], err_msg=k)
    if which == "coadd" or batch["redshift"][0] == clean["redshift"][0]:
        assert batch["redshift"][0] == clean["redshift"][0]
        return "same"
    lo, hi = REDSHIFT_RANGE
    assert np.isfinite(batch["redshift"]).all() and lo <= batch["redshift"][0] <= hi
    return "undetectable"


def read_quietly(coadd, redrock, strict=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_desi_spectra(coadd, [redrock], rejects=RejectLog(strict=strict))


def run_campaign(real_data, tmp_path, which: str, seed: int, n_flips: int = 14) -> dict:
    src = {"coadd": real_data / "desi" / f"coadd-{TAG}.fits",
           "redrock": real_data / "desi" / f"redrock-{TAG}.fits"}
    clean, _ = read_desi_spectra(src["coadd"], [src["redrock"]])
    rng = np.random.default_rng(seed)
    tally = {"error": 0, "reject": 0, "same": 0, "undetectable": 0}
    for name, blob in corruptions(src[which].read_bytes(), rng, n_flips):
        files = {k: tmp_path / f"{name}-{v.name}" for k, v in src.items()}
        for k, v in src.items():
            shutil.copy(v, files[k]) if k != which else files[k].write_bytes(blob)
        try:
            batch, rejects = read_quietly(files["coadd"], files["redrock"])
        except DatasetError as e:              # ReaderError: must name the corrupted file
            assert files[which].name in str(e), (name, e)
            tally["error"] += 1
        else:
            tally[classify(clean, batch, rejects, files[which].name, which)] += 1
        for f in files.values():
            f.unlink()
    return tally


@pytest.mark.slow
@pytest.mark.parametrize("which,seed", [("coadd", 7), ("redrock", 8)])
def test_corrupted_desi_files_fail_cleanly(real_data, tmp_path, which, seed):
    tally = run_campaign(real_data, tmp_path, which, seed)
    assert sum(tally.values()) == 24
    assert tally["error"] + tally["reject"] >= 6          # at least every truncation is caught


@pytest.mark.slow
def test_build_with_skip_bad_rejects_corrupted_copy_and_keeps_the_good_file(real_data, tmp_path):
    data = (real_data / "desi" / f"coadd-{TAG}.fits").read_bytes()
    rr = real_data / "desi" / f"redrock-{TAG}.fits"
    good = real_data / "desi" / "coadd-special-dark-27247.fits"
    rng = np.random.default_rng(11)
    for i, (name, blob) in enumerate(corruptions(data, rng, n_flips=8)):
        bad = tmp_path / f"coadd-{name}.fits"
        bad.write_bytes(blob)
        cfg = BuildConfig(out=str(tmp_path / f"out{i}"), spectra=[str(bad), str(good)],
                          redshifts=[str(rr), str(real_data / "desi" /
                                                      "redrock-special-dark-27247.fits")],
                          keep_unpaired=True, skip_bad=True, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = build_dataset(cfg)["report"]          # never raises with skip_bad
        text = (tmp_path / f"out{i}" / "rejects.csv").read_text()
        assert report.rows_written in (1, 2)
        assert (report.rows_written == 2) != (bad.name in text), (name, text)
