"""Legacy Survey cutout FITS and Stein et al. HDF5: band order from the file, sizes, ids, positions."""
from __future__ import annotations

import numpy as np
import pytest

from galclip import conventions as C
from galclip.data.legacysurvey import (
    iter_cutout_fits,
    iter_stein_h5,
    read_cutout_fits,
    write_cutout_fits,
)
from galclip.data.readers import ReaderError, RejectLog, fit_image_size, ls_targetid


def _cube(n_bands=3, size=152, seed=0):
    # plane b is filled with b + small noise so a band shuffle is obvious
    rng = np.random.default_rng(seed)
    return (np.arange(n_bands)[:, None, None] + 0.01 * rng.normal(size=(n_bands, size, size))
            ).astype(np.float32)


def test_cutout_band_order_comes_from_the_header(tmp_path):
    cube = _cube()                                     # planes written in z, g, r order
    write_cutout_fits(tmp_path / "c.fits", cube, 150.1, 2.2, bands="zgr")
    out = read_cutout_fits(tmp_path / "c.fits")
    assert out["image"].shape == C.IMAGE_SHAPE and out["bands"] == ["z", "g", "r"]
    np.testing.assert_array_equal(out["image"][0], cube[1])   # g
    np.testing.assert_array_equal(out["image"][1], cube[2])   # r
    np.testing.assert_array_equal(out["image"][2], cube[0])   # z
    assert out["ra"] == pytest.approx(150.1, abs=1e-9) and out["dec"] == pytest.approx(2.2)
    assert not out["image_resized"]


def test_dr10_griz_cutout_keeps_grz_by_name(tmp_path):
    cube = _cube(4)
    write_cutout_fits(tmp_path / "c.fits", cube, 10.0, -5.0, bands="griz")
    img = read_cutout_fits(tmp_path / "c.fits")["image"]
    np.testing.assert_array_equal(img, cube[[0, 1, 3]])


def test_cutout_without_band_names_or_band_is_an_error(tmp_path):
    from astropy.io import fits

    fits.PrimaryHDU(_cube()).writeto(tmp_path / "nobands.fits")
    with pytest.raises(ReaderError, match="nobands.fits: primary header BANDS.*refusing"):
        read_cutout_fits(tmp_path / "nobands.fits")
    write_cutout_fits(tmp_path / "gr.fits", _cube(2), 1.0, 1.0, bands="gr")
    with pytest.raises(ReaderError, match=r"band\(s\) \['z'\] missing"):
        read_cutout_fits(tmp_path / "gr.fits")
    rejects = RejectLog(strict=False)
    assert list(iter_cutout_fits([tmp_path / "gr.fits"], rejects)) == []
    assert "missing" in rejects.items[0].reason


@pytest.mark.parametrize("size", [160, 120])
def test_other_sizes_are_centre_cropped_or_padded_and_flagged(tmp_path, size):
    cube = _cube(size=size)
    cube[:, size // 2, size // 2] = 99.0                           # mark the centre pixel
    write_cutout_fits(tmp_path / "c.fits", cube, 0.5, 0.5)
    out = read_cutout_fits(tmp_path / "c.fits")
    assert out["image"].shape == C.IMAGE_SHAPE and out["image_resized"]
    assert (out["image"][:, 76, 76] == 99.0).all()                # centre stays at the centre
    if size < 152:
        assert (out["image"][:, 0, :] == 0).all()                  # zero padding at the edge
    assert fit_image_size(_cube())[1] is False


def test_stein_h5_published_layout_ids_and_band_attribute(tmp_path):
    h5py = pytest.importorskip("h5py")
    n = 5
    images = np.stack([_cube(seed=i) for i in range(n)])          # (N, 3, 152, 152) g, r, z
    rng = np.random.default_rng(1)
    cols = {"ra": rng.uniform(0, 360, n), "dec": rng.uniform(-10, 10, n),
            "release": np.full(n, 9010), "brickid": rng.integers(1, 600000, n),
            "objid": rng.integers(0, 5000, n), "z_spec": np.array([0.1, -99, 0.3, 0.2, -99.])}
    path = tmp_path / "images_npix152_000000000_000000005.h5"
    with h5py.File(path, "w") as f:
        f["images"] = images
        for k, v in cols.items():
            f[k] = v
    batches = list(iter_stein_h5(path, chunk=2))
    got = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    np.testing.assert_array_equal(got["image"], images)
    np.testing.assert_array_equal(got["object_id"], ls_targetid(cols["release"],
                                                                 cols["brickid"], cols["objid"]))
    assert np.isnan(got["redshift"][[1, 4]]).all() and got["redshift"][0] == np.float32(0.1)
    with h5py.File(path, "a") as f:                                # a file that names its bands
        f["images"].attrs["bands"] = np.array([b"r", b"z", b"g"])
    img = next(iter_stein_h5(path))["image"][0]
    np.testing.assert_array_equal(img, images[0][[2, 0, 1]])


def test_ls_targetid_matches_the_desi_fibermap(real_data):
    from astropy.io import fits

    fm = fits.getdata(real_data / "desi" / "coadd-4-80613-thru20210324.fits", "FIBERMAP")
    tid = ls_targetid(fm["RELEASE"], fm["BRICKID"], fm["BRICK_OBJID"])
    np.testing.assert_array_equal(tid, fm["TARGETID"])
