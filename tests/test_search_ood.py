"""The out-of-distribution score of a query (galclip.search.ood): calibrated so that 1 % of
held-out catalog galaxies are flagged, higher for spectra unlike the catalog's, reported by
search (API and --json), stored beside the index."""
from __future__ import annotations

import json

import numpy as np
import pytest

from galclip.search.ood import FLAG_FRACTION, load_reference, ood_scores, reference_path

DIM = 16


def _draw(n: int, seed: int) -> np.ndarray:
    """Unit vectors from a fixed mixture of 8 clusters in 16-D (the 'simulated' population)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(8, DIM))
    x = centres[rng.integers(0, 8, n)] + 0.5 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vector_catalog(tmp_path_factory):
    from galclip.search.api import Catalog
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    out = tmp_path_factory.mktemp("ood") / "catalog"
    n = 6000
    rng = np.random.default_rng(0)
    meta = {"object_id": np.arange(n, dtype=np.int64) * 3 + 7, "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-5, 5, n), "redshift": rng.uniform(0, 0.6, n).astype(np.float32)}
    write_catalog(out, meta, {"spectrum": _draw(n, 1)}, model_sha256="0" * 64)
    build_index(out, "spectrum", verbose=False)
    return Catalog(out)


def test_one_percent_of_new_galaxies_from_the_catalog_population_are_flagged(vector_catalog):
    fresh = ood_scores(vector_catalog, "spectrum", _draw(4000, 2))
    assert 0.003 < fresh["unfamiliar"].mean() < 0.025
    assert 0.4 < np.median(fresh["ood_score"]) < 0.6               # uniform for familiar draws
    ref = load_reference(vector_catalog, "spectrum")
    assert 450 < len(ref.distances) < 750                           # the test split, ~10 %
    assert np.mean(ref.distances > ref.threshold) == pytest.approx(FLAG_FRACTION, abs=0.004)


def test_vectors_unlike_the_catalog_score_high_and_are_flagged(vector_catalog):
    odd = np.random.default_rng(3).normal(size=(50, DIM)).astype(np.float32)
    odd /= np.linalg.norm(odd, axis=1, keepdims=True)               # no cluster structure
    out = ood_scores(vector_catalog, "spectrum", odd)
    familiar = ood_scores(vector_catalog, "spectrum", _draw(50, 4))
    assert np.median(out["ood_score"]) > 0.95 > np.median(familiar["ood_score"])
    assert out["unfamiliar"].mean() > 0.5


def test_a_catalog_row_is_scored_without_itself(vector_catalog):
    row = 10
    v = vector_catalog.embedding(int(vector_catalog.meta["object_id"][row]), "spectrum")
    with_self = ood_scores(vector_catalog, "spectrum", v)["kth_distance"][0]
    without = ood_scores(vector_catalog, "spectrum", v, self_rows=np.array([row]))
    assert without["kth_distance"][0] > with_self
    res = vector_catalog.search(id=int(vector_catalog.meta["object_id"][row]), from_="spectrum")
    assert res.query["ood_distance"] == pytest.approx(without["kth_distance"][0], abs=1e-5)


def test_the_reference_is_stored_beside_the_index_and_reused(vector_catalog):
    from galclip.search.api import Catalog

    load_reference(vector_catalog, "spectrum")
    path = reference_path(vector_catalog.path, "spectrum")
    stored = json.loads(path.read_text())
    assert stored["k"] == 10 and stored["split"] == ["test", "reference"]
    before = path.stat().st_mtime_ns
    again = load_reference(Catalog(vector_catalog.path), "spectrum")
    assert path.stat().st_mtime_ns == before and again.threshold == stored["threshold"]


def test_look_up_only_reference_rows_calibrate_beside_the_test_split(tmp_path):
    """Rows labelled 'reference' (galclip simulate --reference) were never trained on: they are
    held out like the test split, the training split is not."""
    from galclip.search.api import Catalog
    from galclip.search.catalog import write_catalog
    from galclip.search.index import build_index

    n = 1500
    split = np.array(["train"] * 900 + ["val"] * 100 + ["test"] * 100 + ["reference"] * 400)
    meta = {"object_id": np.arange(n, dtype=np.int64), "split": split,
            "ra": np.linspace(0, 359, n), "dec": np.zeros(n),
            "redshift": np.random.default_rng(5).uniform(0, 0.6, n).astype(np.float32)}
    write_catalog(tmp_path / "c", meta, {"spectrum": _draw(n, 6)}, model_sha256="0" * 64)
    build_index(tmp_path / "c", "spectrum", verbose=False)
    cat = Catalog(tmp_path / "c")
    ref = load_reference(cat, "spectrum")
    assert len(ref.distances) == 500                       # 100 test + 400 reference rows
    fresh = ood_scores(cat, "spectrum", _draw(3000, 7))
    assert 0.002 < fresh["unfamiliar"].mean() < 0.03


def _spectra(n: int, seed: int) -> np.ndarray:
    """(n, 7781) flux of a clustered population (search_helpers.latent_rows' spectra: each of
    12 latent values sets the level of one wavelength block), without the images."""
    from galclip import conventions as C
    from search_helpers import _block

    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(size=(6, 12))
    z = centres[rng.integers(0, 6, n)] + 0.6 * rng.normal(size=(n, 12))       # (N, 12)
    flux = (1.0 + rng.normal(0, 0.02, size=(n, C.N_WAVE))).astype(np.float32)
    for j in range(12):
        flux[:, _block(j)] += 0.5 * z[:, j, None]
    return flux


def _pca_model(flux: np.ndarray, n_comp: int = 12):
    """A stand-in spectrum encoder 'trained' on the catalog's spectra: the projection of the
    mean-subtracted flux on their first principal components, unit-normalized."""
    import torch

    x = flux[:300].astype(np.float64)
    mean = x.mean(0)
    x = x - mean
    val, vec = np.linalg.eigh(x @ x.T)                        # Gram matrix: (300, 300), cheap
    top = np.argsort(val)[::-1][:n_comp]
    vt = (x.T @ vec[:, top] / np.sqrt(val[top])).T             # (n_comp, 7781) components

    class PCAEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
            self.register_buffer("comp", torch.from_numpy(vt[:n_comp].T.astype(np.float32)))

        def encode_spectrum(self, flux, ivar):  # (B, 7781) each
            return torch.nn.functional.normalize((flux - self.mean) @ self.comp, dim=-1)

    return PCAEncoder()


def test_shuffled_and_sky_only_spectra_rank_above_test_spectra(tmp_path):
    """A model fitted to the catalog's spectra: spectra of new galaxies drawn like the
    catalog's score lower than a pixel-shuffled spectrum and a sky-only spectrum, and those two
    are flagged."""
    import torch

    from galclip import conventions as C
    from galclip.search.api import Catalog
    from galclip.search.catalog import write_catalog

    flux = _spectra(1500, seed=5)
    model = _pca_model(flux)
    with torch.inference_mode():
        emb = model.encode_spectrum(torch.from_numpy(flux), None).numpy()
    rng = np.random.default_rng(0)
    meta = {"object_id": np.arange(1500, dtype=np.int64), "ra": rng.uniform(0, 360, 1500),
            "dec": rng.uniform(-5, 5, 1500), "redshift": rng.uniform(0, 0.6, 1500)}
    write_catalog(tmp_path / "cat", meta, {"spectrum": emb}, model_sha256="0" * 64)
    cat = Catalog(tmp_path / "cat", model=model)
    new = _spectra(40, seed=77)
    ones = np.ones(C.N_WAVE, np.float32)
    found = [cat.search(spectrum=(f, ones), k=3).query for f in new]
    scores, dists = [q["ood_score"] for q in found], [q["ood_distance"] for q in found]
    shuffled = np.random.default_rng(0).permutation(new[0])
    wave = C.wavelength_grid()
    sky = 0.2 + sum(5.0 * np.exp(-0.5 * ((wave - w) / 1.0) ** 2)
                    for w in (5578.9, 6302.0, 7341.0, 7821.0, 8399.0, 8827.0, 9378.0))
    odd = [cat.search(spectrum=(x.astype(np.float32), ones), k=3).query for x in (shuffled, sky)]
    assert all(q["ood_distance"] > max(dists) for q in odd), (odd, max(dists))
    assert all(q["unfamiliar"] for q in odd) and np.mean(scores) < 0.8


def test_search_json_reports_the_query_familiarity(vector_catalog, capsys):
    from galclip.cli import main

    oid = int(vector_catalog.meta["object_id"][3])
    assert main(["search", str(vector_catalog.path), "--id", str(oid), "--from", "spectrum",
                 "--k", "2", "--json"]) == 0
    q = json.loads(capsys.readouterr().out)["query"]
    assert 0.0 <= q["ood_score"] <= 1.0 and isinstance(q["unfamiliar"], bool)
    assert main(["search", str(vector_catalog.path), "--id", str(oid), "--from", "spectrum",
                 "--k", "2"]) == 0
    assert "# OOD score" in capsys.readouterr().out
