"""The OOD score's redshift check (galclip.search.ood): a spectrum whose embedding lands among
familiar catalog spectra that agree on the wrong redshift is flagged unfamiliar, because its
neighbours' redshift disagrees with a template fit; spectra drawn like the catalog's are not.

The stand-in model sees only the continuum (block medians: blind to narrow lines), so a
spectrum with the continuum of a z = 0.1 galaxy and the lines of a z = 0.45 one embeds among
the z = 0.1 galaxies, close to them: the distance alone calls it familiar."""
from __future__ import annotations

import json

import numpy as np
import pytest

from galclip import conventions as C
from galclip.search import ood
from galclip.search.redshift_templates import basis_path, write_basis

LINES = (3727.4, 4862.7, 5008.2, 6564.6)   # rest vacuum Angstrom: [O II], Hbeta, [O III], Halpha
NOISE = 0.05
N_BLOCKS = 8


def _spectrum(z_continuum: float, z_lines: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """A continuum whose slope in ln(lambda) grows with ``z_continuum`` and four emission lines
    at ``z_lines``, white noise of NOISE; (flux, ivar), each (7781,)."""
    wave = C.wavelength_grid()
    f = 1.0 + 2.0 * z_continuum * np.log(wave / 6000.0)
    for w0 in LINES:
        f += 2.0 * np.exp(-0.5 * ((wave - w0 * (1 + z_lines)) / (2.0 * (1 + z_lines))) ** 2)
    f += rng.normal(0, NOISE, C.N_WAVE)
    return f.astype(np.float32), np.full(C.N_WAVE, NOISE ** -2, np.float32)


def _basis() -> tuple[float, np.ndarray]:
    """A rest-frame basis that spans these spectra: constant, ln(lambda), one row per line."""
    from galclip.search.redshift_templates import rest_grid

    g = rest_grid()
    rows = [np.ones_like(g), np.log(g / 6000.0)]
    rows += [np.exp(-0.5 * ((g - w0) / 2.0) ** 2) for w0 in LINES]
    return float(np.log(g[0])), np.array(rows, np.float32)


class ContinuumModel:
    """Stand-in spectrum encoder: the medians of 8 wavelength blocks (lines do not move them)."""

    training = False

    def eval(self):
        return self

    def encode_spectrum(self, flux, ivar):  # (B, 7781) each -> (B, 9) unit vectors
        import torch

        b = torch.stack([blk.median(dim=1).values
                         for blk in torch.tensor_split(flux, N_BLOCKS, dim=1)], 1)   # (B, 8)
        v = torch.cat([torch.ones_like(b[:, :1]), 10.0 * (b - 1.0)], 1)
        return torch.nn.functional.normalize(v, dim=-1)


def _embed(model, flux: np.ndarray) -> np.ndarray:
    import torch

    return model.encode_spectrum(torch.from_numpy(flux), None).numpy()


@pytest.fixture(scope="module")
def line_catalog(tmp_path_factory):
    """1000 galaxies whose continuum and lines agree on z ~ U(0.05, 0.6), their spectra, and
    the template basis stored beside the catalog."""
    from galclip.search.catalog import write_catalog

    rng = np.random.default_rng(0)
    n = 1000
    z = rng.uniform(0.05, 0.6, n)
    flux, ivar = (np.stack(a) for a in zip(*(_spectrum(x, x, rng) for x in z), strict=True))
    model = ContinuumModel()
    out = tmp_path_factory.mktemp("ood-z") / "catalog"
    meta = {"object_id": np.arange(n, dtype=np.int64) + 100, "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-5, 5, n), "redshift": z.astype(np.float32)}
    write_catalog(out, meta, {"spectrum": _embed(model, flux)}, model_sha256="0" * 64)
    lnw0, basis = _basis()
    write_basis(basis_path(out), lnw0, basis)
    return out, model, flux, ivar


@pytest.fixture
def catalog(line_catalog, monkeypatch):
    """The catalog opened with its model; its held-out spectra served from memory (a catalog
    written from arrays has no dataset folder)."""
    from galclip.search.api import Catalog

    path, model, flux, ivar = line_catalog
    monkeypatch.setattr(ood, "heldout_spectra", lambda cat, rows: (flux[rows], ivar[rows]))
    return Catalog(path, model=model)


def test_a_confidently_wrong_spectrum_near_the_catalog_is_flagged(catalog):
    rng = np.random.default_rng(1)
    odd = _spectrum(0.1, 0.45, rng)
    q = catalog.search(spectrum=odd, k=5).query
    assert q["ood_check"] == "distance+redshift"
    assert q["neighbour_z"] == pytest.approx(0.1, abs=0.02)      # the model reads z = 0.1
    assert q["template_z"] == pytest.approx(0.45, abs=0.002)     # the lines say 0.45
    assert q["unfamiliar"] and q["ood_score"] > 0.99
    alone = ood.ood_scores(catalog, "spectrum", catalog.embed("spectrum", *odd))
    assert not alone["unfamiliar"][0]                            # the distance calls it familiar


def test_spectra_drawn_like_the_catalog_are_rarely_flagged(catalog):
    rng = np.random.default_rng(2)
    z = rng.uniform(0.05, 0.6, 60)
    flux, ivar = (np.stack(a) for a in zip(*(_spectrum(x, x, rng) for x in z), strict=True))
    out = ood.ood_scores(catalog, "spectrum", _embed(catalog.model, flux), spectra=(flux, ivar))
    assert np.abs(out["template_z"] - z).max() < 0.002
    assert out["unfamiliar"].mean() <= 0.05 and 0.2 < np.median(out["ood_score"]) < 0.8
    ref = ood.load_reference(catalog, "spectrum", check=True)
    assert np.mean(ref.check.combined > ref.check.threshold) <= ood.FLAG_FRACTION + 1e-9


def test_shuffled_and_sky_only_spectra_rank_above_spectra_like_the_catalogs(catalog):
    rng = np.random.default_rng(3)
    z = rng.uniform(0.05, 0.6, 30)
    flux, ivar = (np.stack(a) for a in zip(*(_spectrum(x, x, rng) for x in z), strict=True))
    fresh = ood.ood_scores(catalog, "spectrum", _embed(catalog.model, flux), spectra=(flux, ivar))
    wave = C.wavelength_grid()
    sky = (0.2 + sum(5.0 * np.exp(-0.5 * ((wave - w) / 1.0) ** 2)
                     for w in (5578.9, 6302.0, 7341.0, 7821.0, 8399.0, 8827.0, 9378.0))
           ).astype(np.float32)
    shuffled = rng.permutation(flux[0])
    for x in (shuffled, sky):
        q = catalog.search(spectrum=(x, ivar[0]), k=3).query
        assert q["unfamiliar"] and q["ood_score"] > fresh["ood_score"].max(), q


def test_the_check_is_stored_with_the_reference_and_read_back_without_refitting(catalog,
                                                                                monkeypatch):
    from galclip.search.api import Catalog

    ood.load_reference(catalog, "spectrum", check=True)
    stored = json.loads(ood.reference_path(catalog.path, "spectrum").read_text())
    assert stored["version"] == ood.VERSION and len(stored["template_check"]["tension"]) > 50

    def refit(*a, **k):
        raise AssertionError("the stored redshift check was fitted again")

    monkeypatch.setattr(ood, "template_check", refit)
    again = ood.load_reference(Catalog(catalog.path, model=catalog.model), "spectrum")
    assert again.check is not None and again.check.threshold == stored["template_check"]["threshold"]


def test_held_out_spectra_are_read_from_the_catalogs_dataset(tiny_dataset, tmp_path):
    from galclip.data import open_dataset
    from galclip.search.api import Catalog
    from galclip.search.catalog import write_catalog

    cols = open_dataset(tiny_dataset).read_columns(["object_id", "ra", "dec", "redshift",
                                                    "spectrum_flux"])
    vecs = np.random.default_rng(0).normal(size=(len(cols["object_id"]), 8)).astype(np.float32)
    meta = {c: cols[c] for c in ("object_id", "ra", "dec", "redshift")}
    write_catalog(tmp_path / "cat", meta, {"spectrum": vecs}, model_sha256="0" * 64,
                  dataset={"path": str(tiny_dataset)})
    flux, _ = ood.heldout_spectra(Catalog(tmp_path / "cat"), np.array([3, 77, 5]))
    np.testing.assert_array_equal(flux, cols["spectrum_flux"][[3, 77, 5]])
    write_catalog(tmp_path / "bare", meta, {"spectrum": vecs}, model_sha256="0" * 64)
    with pytest.raises(ValueError, match="no readable dataset"):
        ood.heldout_spectra(Catalog(tmp_path / "bare"), np.array([3]))


def test_predict_with_the_redshift_check_flags_what_the_distance_passes(catalog, tmp_path,
                                                                       monkeypatch):
    """galclip predict --redshift-check: the confidently wrong spectrum is flagged, the same
    galaxy without the check is not; spectra drawn like the reference's stay unflagged."""
    from galclip.eval.predict import predict
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    rng = np.random.default_rng(4)
    z = rng.uniform(0.05, 0.6, 20)
    pairs = [_spectrum(x, x, rng) for x in z] + [_spectrum(0.1, 0.45, rng)]
    flux, ivar = (np.stack(a) for a in zip(*pairs, strict=True))
    n = len(flux)
    meta = {"object_id": np.arange(n, dtype=np.int64) + 50_000, "ra": np.zeros(n),
            "dec": np.zeros(n), "redshift": np.append(z, 0.45).astype(np.float32)}
    write_catalog(tmp_path / "q", meta, {"spectrum": _embed(catalog.model, flux)},
                  model_sha256="0" * 64)
    build_index(catalog.path, "spectrum", kind="flat", verbose=False)
    at = {int(o): i for i, o in enumerate(meta["object_id"])}

    class InMemory:
        def __init__(self, manifest, where):
            pass

        def read(self, ids):
            rows = [at[int(o)] for o in ids]
            return flux[rows].astype(np.float64), ivar[rows].astype(np.float64)

    monkeypatch.setattr(ood, "DatasetSpectra", InMemory)
    kw = {"from_": "spectrum", "properties": ["redshift"], "k": 16, "workers": 1}
    plain = predict(tmp_path / "q", catalog.path, **kw).table.column("unfamiliar").to_numpy()
    checked = predict(tmp_path / "q", catalog.path, redshift_check=True, **kw).table
    flag = checked.column("unfamiliar").to_numpy()
    assert not plain[-1] and flag[-1]
    assert flag[:-1].sum() <= 1


def _private_copy(line_catalog, tmp_path, monkeypatch):
    """A copy of the catalog folder (its stored reference is this test's alone), the held-out
    spectra served from memory as in ``catalog``."""
    import shutil

    path, model, flux, ivar = line_catalog
    copy = shutil.copytree(path, tmp_path / "catalog")
    for f in copy.glob("ood-*.json"):
        f.unlink()
    monkeypatch.setattr(ood, "heldout_spectra", lambda cat, rows: (flux[rows], ivar[rows]))
    return copy, model, flux, ivar


def test_scoring_by_distance_alone_never_builds_the_check(line_catalog, tmp_path, monkeypatch):
    from galclip.search.api import Catalog

    path, model, flux, _ = _private_copy(line_catalog, tmp_path, monkeypatch)

    def refit(*a, **k):
        raise AssertionError("the redshift check was built for a distance-only score")

    monkeypatch.setattr(ood, "template_check", refit)
    cat = Catalog(path, model=model)
    out = ood.ood_scores(cat, "spectrum", _embed(model, flux[:20]))
    assert "tension" not in out and len(out["ood_score"]) == 20
    assert cat.search(id=105, from_="spectrum", k=3).query["ood_check"] == "distance"
    stored = json.loads(ood.reference_path(path, "spectrum").read_text())
    assert stored["template_check"] is None


def test_the_check_is_built_on_the_first_spectrum_query_and_a_later_basis_is_picked_up(
        line_catalog, tmp_path, monkeypatch, capsys):
    from galclip.search.api import Catalog

    path, model, flux, ivar = _private_copy(line_catalog, tmp_path, monkeypatch)
    basis = basis_path(path)
    basis.unlink()                                    # no basis yet: distance alone, said once
    out = ood.ood_scores(Catalog(path, model=model), "spectrum", _embed(model, flux[:5]),
                         spectra=(flux[:5], ivar[:5]))
    assert "tension" not in out and "no redshift check" in capsys.readouterr().err
    write_basis(basis, *_basis())                     # galclip index --ood-templates, later
    out = ood.ood_scores(Catalog(path, model=model), "spectrum", _embed(model, flux[:5]),
                         spectra=(flux[:5], ivar[:5]))
    assert "tension" in out
    stored = json.loads(ood.reference_path(path, "spectrum").read_text())
    assert len(stored["template_check"]["tension"]) > 50
