"""Ingest checks on real DESI files: each physically impossible value, written with valid
checksums (so only the content check can catch it), is an error naming file, HDU/column and
row, a reject with --skip-bad, and never a row in the dataset."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from galclip.data.build import BuildConfig, build_dataset
from galclip.data.desi import read_desi_spectra
from galclip.data.readers import ReaderError, RejectLog

TAG = "4-80613-thru20210324"


def _set(hdu, col_or_slice, value):
    def fn(h):
        if isinstance(col_or_slice, str):
            h[hdu].data[col_or_slice][0] = value
        else:
            h[hdu].data[col_or_slice] = value
    return fn


def _replace(hdu, make):
    def fn(h):
        from astropy.io import fits
        h[hdu] = fits.ImageHDU(make(h[hdu].data), header=h[hdu].header, name=hdu)
    return fn


COADD_EDITS = {   # name -> (edit, what the error names)
    "mask-float": (_replace("B_MASK", lambda d: d.astype(np.float32)), "B_MASK"),
    "wave-reversed": (_replace("B_WAVELENGTH", lambda d: d[::-1].copy()), "B_WAVELENGTH"),
    "wave-constant": (_replace("B_WAVELENGTH", lambda d: np.full_like(d, 4000.0)),
                      "B_WAVELENGTH"),
    "wave-shifted": (_replace("B_WAVELENGTH", lambda d: d + 0.8), "B_WAVELENGTH"),
    "ra-nan": (_set("FIBERMAP", "TARGET_RA", np.nan), "TARGET_RA"),
    "ra-999": (_set("FIBERMAP", "TARGET_RA", 999.0), "TARGET_RA"),
    "dec-inf": (_set("FIBERMAP", "TARGET_DEC", np.inf), "TARGET_DEC"),
    "dec-95": (_set("FIBERMAP", "TARGET_DEC", 95.0), "TARGET_DEC"),
    "flux-3e38": (_set("B_FLUX", (0, 500), 3e38), "B_FLUX"),
    "flux-minus-1e30": (_set("R_FLUX", (0, 500), -1e30), "R_FLUX"),
    "ivar-1e30": (_set("Z_IVAR", (0, 500), 1e30), "Z_IVAR"),
}
REDROCK_EDITS = {f"z-{v}": (_set("REDSHIFTS", "Z", v), "Z") for v in (np.nan, np.inf, -0.5, 1e6)}


def _edited(real_data, tmp_path, which, edit):
    from astropy.io import fits

    files = {k: tmp_path / f"{k}-{TAG}.fits" for k in ("coadd", "redrock")}
    for k, dst in files.items():
        with fits.open(real_data / "desi" / dst.name, memmap=False) as h:
            if k == which:
                edit(h)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h.writeto(dst, checksum=k == "coadd")     # fresh, valid checksums
    return files


@pytest.mark.parametrize("which,name", [("coadd", n) for n in COADD_EDITS] +
                         [("redrock", n) for n in REDROCK_EDITS])
def test_impossible_values_are_errors_or_rejects_never_rows(real_data, tmp_path, which, name):
    edit, field = (COADD_EDITS if which == "coadd" else REDROCK_EDITS)[name]
    files = _edited(real_data, tmp_path, which, edit)
    with pytest.raises(ReaderError, match=rf"{files[which].name}: .*{field}") as e:
        read_desi_spectra(files["coadd"], [files["redrock"]])
    assert "Traceback" not in str(e.value)
    try:
        batch, rejects = read_desi_spectra(files["coadd"], [files["redrock"]],
                                           rejects=RejectLog(strict=False))
    except ReaderError:              # a file-level problem (grid, MASK type) stays an error
        assert field in ("B_MASK", "B_WAVELENGTH")
        return
    assert batch == {} and any(field in r.field for r in rejects.items), rejects.items


def test_header_checksum_catches_a_flipped_bzero_digit(real_data, tmp_path):
    """One byte of a MASK HDU's BZERO card: DATASUM still matches, CHECKSUM does not."""
    src = real_data / "desi" / "coadd-sv3-dark-26065.fits"     # its MASK HDUs have BZERO 2**31
    data = bytearray(src.read_bytes())
    i = data.find(b"2147483648")
    assert i > 0
    data[i] = ord("3")
    path = tmp_path / src.name
    path.write_bytes(bytes(data))
    with pytest.raises(ReaderError, match="MASK: CHECKSUM .* mismatch"):
        read_desi_spectra(path, require_redshift=False)


def test_skip_bad_build_rejects_bad_redrock_and_verify_error_files_and_carries_on(real_data,
                                                                                 tmp_path):
    desi = real_data / "desi"
    bad_rr = tmp_path / f"redrock-{TAG}.fits"
    bad_rr.write_bytes((desi / bad_rr.name).read_bytes()[:6000])          # truncated
    blob = bytearray((desi / f"coadd-{TAG}.fits").read_bytes())
    i = blob.find(b"EXTNAME = 'B_FLUX  '")
    blob[i:i + 20] = b"EXTNAME = 'B_FLUX   "                              # unparsable card
    bad = tmp_path / "coadd-verify.fits"
    bad.write_bytes(bytes(blob))
    shutil.copy(desi / "coadd-special-dark-27247.fits", tmp_path)
    cfg = BuildConfig(out=str(tmp_path / "out"), spectra=[str(bad), str(tmp_path /
                      "coadd-special-dark-27247.fits"), str(desi / f"coadd-{TAG}.fits")],
                      redshifts=[str(bad_rr), str(desi / "redrock-special-dark-27247.fits")],
                      keep_unpaired=True, skip_bad=True, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = build_dataset(cfg)["report"]
    text = (tmp_path / "out" / "rejects.csv").read_text()
    assert report.rows_written == 1
    assert "VerifyError" in text and bad_rr.name in text and "no redshift" in text
    cfg.skip_bad, cfg.out = False, str(tmp_path / "strict")
    with pytest.raises(ReaderError, match=bad_rr.name):
        build_dataset(cfg)
