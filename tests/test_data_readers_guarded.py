"""readers.guarded: a truncated or malformed file becomes a ReaderError (a reject under
--skip-bad) naming the file; a bug in galclip's own reader code is never hidden as one."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from galclip.data.build import BuildConfig, build_dataset
from galclip.data.readers import ReaderError, guarded

TAG = "4-80613-thru20210324"


@pytest.fixture
def table_fits(tmp_path):
    from astropy.io import fits

    path = tmp_path / "table.fits"
    fits.BinTableHDU.from_columns([fits.Column("flux", "E", array=np.arange(5000.0))],
                                  name="DATA").writeto(path)
    return path


def test_a_truncated_file_is_a_reader_error_naming_it(table_fits):
    from astropy.io import fits

    table_fits.write_bytes(table_fits.read_bytes()[:4000])   # header intact, data cut short
    with pytest.raises(ReaderError, match=f"{table_fits.name}: HDU DATA: cannot read"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            guarded(table_fits, "HDU DATA", lambda: np.array(fits.getdata(table_fits, "DATA")))


def test_a_missing_hdu_raised_inside_astropy_is_a_format_error(table_fits):
    from astropy.io import fits

    with fits.open(table_fits) as hdul, pytest.raises(ReaderError, match="KeyError"):
        guarded(table_fits, "HDU FIBERMAP", lambda: hdul["FIBERMAP"])


@pytest.mark.parametrize("bug", [lambda: len(None), lambda: {}["key"], lambda: None.shape])
def test_a_bug_in_galclip_code_propagates_unchanged(table_fits, bug):
    with pytest.raises((TypeError, KeyError, AttributeError)) as info:
        guarded(table_fits, "HDU DATA", bug)
    assert not isinstance(info.value, ReaderError)


def _desi_build(real_data, tmp_path, coadds):
    rr = [real_data / "desi" / f"redrock-{t}.fits" for t in (TAG, "special-dark-27247")]
    cfg = BuildConfig(out=str(tmp_path / "out"), spectra=[str(c) for c in coadds],
                      redshifts=[str(r) for r in rr], keep_unpaired=True, skip_bad=True,
                      progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_dataset(cfg)["report"]


def test_skip_bad_rejects_a_truncated_file_by_name(real_data, tmp_path):
    bad = tmp_path / f"coadd-{TAG}-truncated.fits"
    bad.write_bytes((real_data / "desi" / f"coadd-{TAG}.fits").read_bytes()[:200_000])
    good = real_data / "desi" / "coadd-special-dark-27247.fits"
    report = _desi_build(real_data, tmp_path, [bad, good])
    assert report.rows_written == 1
    rejects = (tmp_path / "out" / "rejects.csv").read_text()
    assert bad.name in rejects and good.name not in rejects


def test_skip_bad_does_not_turn_a_reader_bug_into_a_reject(real_data, tmp_path, monkeypatch):
    from galclip.data.desi import DesiSpectraFile

    def buggy(self, arm):
        raise TypeError("a bug in the mask check")

    monkeypatch.setattr(DesiSpectraFile, "_check_mask_type", buggy)
    with pytest.raises(TypeError, match="a bug in the mask check"):
        _desi_build(real_data, tmp_path, [real_data / "desi" / f"coadd-{TAG}.fits"])


def test_a_spectrum_only_build_validates_its_all_null_image_column(real_data, tmp_path):
    from galclip.data.format import validate_dataset

    report = _desi_build(real_data, tmp_path, [real_data / "desi" / f"coadd-{TAG}.fits"])
    assert report.rows_written == 1 and report.written_spectrum_only == 1
    assert validate_dataset(tmp_path / "out", content=True)["n_rows"] == 1
