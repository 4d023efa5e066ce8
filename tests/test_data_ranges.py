"""Range checks of the non-DESI readers (cutout FITS, Stein, MMU Legacy Survey and DESI,
AstroCLIP HDF5, PROVABGS): seeded impossible values (NaN/inf/out-of-range positions, redshifts,
flux, ivar, pixels, properties) are an error naming file and field, or under a lenient
RejectLog a reject naming file, field and row with every other row read exactly as from the
clean file; seeded byte corruptions are an error, a reject, the clean output or a change with
every value still possible. Never a traceback, never an impossible value in the output."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from galclip.data.format import DatasetError
from galclip.data.readers import ReaderError, RejectLog, coordinate_problem, image_problem
from galclip.testing.corrupt import byte_variants, value_variants
from galclip.testing.examples import (
    FORMATS,
    field_shapes,
    implausible,
    read_example,
    set_value,
    write_example,
)

pytest.importorskip("h5py")
SUFFIX = {"cutout": ".fits", "astroclip-h5": ".h5"}
#: the name an error gives a field edited by set_value
ERROR_NAME = {"data": "primary HDU", "CRVAL2": "primary header WCS"}
ROW_KEY = {"provabgs": "targetid"}


def _read(fmt, path, strict):
    rejects = RejectLog(strict=strict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_example(fmt, path, rejects), rejects


def _same(a: dict, b: dict) -> bool:
    """Equal outputs, but for the ``source`` column (the file's name)."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind
                                                       == "f") for k in a if k != "source")


def _clean(fmt, tmp_path):
    path = write_example(fmt, tmp_path / f"clean-{fmt}{SUFFIX.get(fmt, '.hdf5')}", n=3)
    clean, rejects = _read(fmt, path, strict=True)
    assert clean and not rejects.items and implausible(clean) is None
    return path, clean


def _rest_of_clean(fmt, clean, got, rejects):
    """Lenient output = the clean output less the rejected rows."""
    key = ROW_KEY.get(fmt, "row")
    gone = [r.object_id if key == "targetid" else r.row for r in rejects.items]
    keep = ~np.isin(clean[key], gone) if fmt != "cutout" else np.zeros(1, bool)
    if not keep.any():
        assert got == {}
        return
    assert _same({k: v[keep] for k, v in clean.items()}, got)


@pytest.mark.parametrize("fmt", FORMATS)
def test_clean_files_read_identically_twice_with_no_rejects(fmt, tmp_path):
    path, clean = _clean(fmt, tmp_path)
    again, rejects = _read(fmt, path, strict=False)
    assert _same(clean, again) and not rejects.items


@pytest.mark.parametrize("fmt", FORMATS)
def test_impossible_values_are_errors_or_rejects_never_rows(fmt, tmp_path):
    src, clean = _clean(fmt, tmp_path)
    path = tmp_path / f"bad-{src.name}"
    tally = {"reject": 0, "identical": 0}
    for name, field, index, value in value_variants(field_shapes(fmt, src),
                                                    np.random.default_rng(7), 40):
        shutil.copy(src, path)
        set_value(fmt, path, field, index, value)
        try:
            got, _ = _read(fmt, path, strict=True)
        except ReaderError as e:
            assert path.name in str(e) and ERROR_NAME.get(field, field.split("/")[-1]) in str(e), \
                (name, str(e))
            got, rejects = _read(fmt, path, strict=False)
            assert rejects.items, name
            assert all(path.name in r.file and r.reason for r in rejects.items)
            assert fmt == "cutout" or all(r.row is not None for r in rejects.items)
            _rest_of_clean(fmt, clean, got, rejects)
            tally["reject"] += 1
        else:                # an element the reader ignores: masked flux, age of a no-fit row
            assert _same(clean, got), name
            tally["identical"] += 1
    assert tally["reject"] >= 30, tally


@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupted_bytes_fail_cleanly_or_stay_possible(fmt, tmp_path):
    src, clean = _clean(fmt, tmp_path)
    path = tmp_path / f"bytes-{src.name}"
    caught = 0
    for name, blob in byte_variants(src.read_bytes(), np.random.default_rng(8), 16):
        path.write_bytes(blob)
        try:
            got, rejects = _read(fmt, path, strict=False)
        except DatasetError as e:
            assert path.name in str(e), (name, str(e))
            caught += 1
            continue
        if rejects.items:
            assert all(path.name in r.file for r in rejects.items), name
            caught += 1
        elif not _same(clean, got):
            assert implausible(got) is None, (name, implausible(got))
    assert caught >= 3          # at least the truncations


def test_shared_checks_name_the_field_and_the_range():
    assert coordinate_problem(999.0, 0.0, ("TARGET_RA", "TARGET_DEC")) == (
        "TARGET_RA", "bad coordinates: TARGET_RA = 999.0, expected finite in [0, 360)")
    assert coordinate_problem(10.0, 90.0) is None and coordinate_problem(0.0, -90.0) is None
    assert coordinate_problem(360.0, 0.0)[0] == "ra"
    assert image_problem(np.full((3, 4, 4), 2e6, np.float32))[1] == \
        "bad data: image: 48 pixels beyond +-1e+06 nanomaggies"


def test_provabgs_no_fit_stays_nan_and_skip_bad_build_reports_the_row(tmp_path):
    from galclip.data.provabgs import read_provabgs

    path = write_example("provabgs", tmp_path / "p.hdf5", n=4)
    cat = read_provabgs(path)
    assert np.isnan(cat["log_mstar"][1]) and np.isnan(cat["tage_mw"][1])  # -999: no fit
    set_value("provabgs", path, "TAGE_MW", (2,), 20.0)
    with pytest.raises(ReaderError, match=r"p.hdf5: TAGE_MW, row 2: bad property: TAGE_MW = "
                       r"20.0, expected finite in \[0, 14\]"):
        read_provabgs(path)
    rejects = RejectLog(strict=False)
    cat = read_provabgs(path, rejects)
    assert len(cat["targetid"]) == 3 and rejects.items[0].object_id == 39633345008634467
