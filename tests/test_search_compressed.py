"""Compressed indexes for survey-sized catalogs (IVF-SQ8, IVF-PQ): built in chunks from the
catalog shards in parts, recall against exact search, bounded memory, filtered search."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from galclip.search.catalog import write_catalog
from galclip.search.filters import apply_where, parse_where
from galclip.search.index import build_index, load_index
from search_helpers import clustered_vectors

N = 12_000


def _catalog(path, n: int = N, dim: int = 32, rows_per_shard: int = 2500):
    rng = np.random.default_rng(0)
    img, spec = clustered_vectors(n, dim, seed=0), clustered_vectors(n, dim, seed=1)
    present = {"image": np.ones(n, bool), "spectrum": np.arange(n) % 5 != 0}
    meta = {"object_id": np.arange(n, dtype=np.int64) * 3 + 11, "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-5, 5, n), "redshift": rng.uniform(0, 1, n).astype(np.float32)}
    write_catalog(path, meta, {"image": img, "spectrum": spec}, model_sha256="0" * 64,
                  present=present, rows_per_shard=rows_per_shard)
    return img, spec, meta, present


def _recall(loaded, vectors, queries, k=10):
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :k]
    _, found = loaded.index.search(queries, k)
    return np.mean([len(np.intersect1d(t, loaded.rows[f])) / k for t, f in zip(truth, found, strict=True)])


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """k-means under OpenMP on a shared 2-core box is ~3x slower than on one thread."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    path = tmp_path_factory.mktemp("compressed")
    return path, *_catalog(path)


@pytest.mark.slow
@pytest.mark.parametrize("kind,floor", [("ivfsq8", 0.95), ("ivfpq", 0.5)])
def test_compressed_index_in_parts_recall_matches_exact_search(cat, kind, floor):
    path, img, spec, _, present = cat
    built = build_index(path, "image", kind=kind, verbose=False,
                        compress={"part_vectors": 4100, "chunk_rows": 2048, "pq_m": 16})
    info = built.info
    assert info["kind"] == kind and len(info["parts"]) == 3 and info["n_vectors"] == N
    assert info["recall_at_10"] >= floor
    code = 16 if kind == "ivfpq" else 32  # pq_m bytes, or one per dimension
    assert info["bytes_per_vector"] == code + 8 and info["index_bytes"] == N * (code + 8)
    # the saved parts, reloaded and searched together, reach the recorded recall on fresh
    # queries drawn as galclip draws them: half images, half spectra (cross-modal search)
    loaded = load_index(path, "image")
    assert loaded.index.ntotal == N and loaded.index.nprobe == info["search_param"]
    rng = np.random.default_rng(7)
    q = np.concatenate([img[rng.choice(N, 300, replace=False)],
                        spec[present["spectrum"]][rng.choice(N * 4 // 5, 300, replace=False)]])
    assert abs(_recall(loaded, img, q) - info["recall_at_10"]) < 0.05


@pytest.mark.slow
def test_parts_merged_at_query_time_equal_one_part(cat):
    path, img, *_ = cat
    one = build_index(path, "image", kind="ivfsq8", save=False, verbose=False,
                      compress={"part_vectors": 10**9, "chunk_rows": 2048})
    three = build_index(path, "image", kind="ivfsq8", save=False, verbose=False,
                        compress={"part_vectors": 4100, "chunk_rows": 3000})
    assert len(one.index.parts) == 1 and len(three.index.parts) == 3
    np.testing.assert_array_equal(one.rows, three.rows)
    q = img[:200]
    three.index.nprobe = one.index.nprobe
    s1, p1 = one.index.search(q, 10)
    s3, p3 = three.index.search(q, 10)
    np.testing.assert_allclose(s1, s3, atol=1e-5)
    assert np.mean(p1 == p3) > 0.99  # equal but for ties


@pytest.mark.slow
def test_chunked_build_never_holds_the_catalog_vectors(tmp_path, monkeypatch):
    from galclip.search import index

    n, dim = 100_000, 64
    _catalog(tmp_path, n, dim, rows_per_shard=10_000)
    monkeypatch.setattr(index, "read_embeddings", lambda *a, **k: pytest.fail("loaded all vectors"))
    tracemalloc.start()
    built = build_index(tmp_path, "image", kind="ivfsq8", verbose=False,
                        compress={"chunk_rows": 4096})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    raw = n * dim * 4
    assert built.info["n_vectors"] == n and built.info["recall_at_10"] >= 0.95
    # what stays is the training sample (10k vectors) and a few chunks, not the 100k vectors
    assert peak < raw / 2, f"peak {peak / 1e6:.1f} MB of Python memory vs {raw / 1e6:.1f} MB raw"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ivfsq8", "ivfpq"])
def test_filtered_search_over_compressed_parts(cat, kind, monkeypatch):
    from galclip.search import api

    path, img, spec, meta, present = cat
    for m in ("image", "spectrum"):
        build_index(path, m, kind=kind, verbose=False,
                    compress={"part_vectors": 4100, "chunk_rows": 2048, "pq_m": 16})
    c = api.Catalog(path)
    row = 7
    np.testing.assert_allclose(c.embedding(int(meta["object_id"][row]), "image"), img[row], atol=1e-6)
    spec_rows = np.flatnonzero(present["spectrum"])
    hits = []
    for where in ["redshift > 0.98", "redshift > 0.3", "0.4 < redshift <= 0.5 and dec > 0"]:
        res = c.search(id=int(meta["object_id"][row]), to="spectrum", k=10, where=where)
        allowed = apply_where(parse_where(where), meta, N) & present["spectrum"]
        assert len(res.neighbours) == 10
        got = [(n["object_id"] - 11) // 3 for n in res.neighbours]
        assert all(allowed[g] for g in got)
        best = spec_rows[allowed[spec_rows]][np.argsort(-(spec[allowed] @ img[row]))[:10]]
        hits.append(len(np.intersect1d(got, best)) / 10)
    assert np.mean(hits) >= (0.9 if kind == "ivfsq8" else 0.4), hits


def test_galclip_index_cli_builds_parts_that_search_loads(tmp_path, capsys):
    from galclip.cli import main
    from galclip.search.api import Catalog

    _, _, meta, _ = _catalog(tmp_path, 6000)
    assert main(["index", str(tmp_path), "--kind", "ivfsq8", "--part-vectors", "2500",
                 "--modalities", "image"]) == 0
    assert "ivfsq8 index over 6000 vectors" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("index-image.part-*")) == [
        f"index-image.part-00{i}.faiss" for i in range(3)]
    res = Catalog(tmp_path).search(id=int(meta["object_id"][3]), k=5)
    assert len(res.neighbours) == 5 and int(meta["object_id"][3]) not in [
        n["object_id"] for n in res.neighbours]


@pytest.mark.parametrize("codec", ["sq8", "pq"])
def test_adding_with_a_separate_assigner_equals_faiss_add(codec):
    """The build assigns lists with a copy of the quantizer (a GPU one under faiss-gpu): the
    codes stored must be those of plain ``index.add``."""
    import faiss

    from galclip.search.ivfpq import add_assigned, trained_index

    x = clustered_vectors(3000, 32, seed=4)
    trained = trained_index(x, 20, codec, pq_m=8)
    plain, ours = faiss.clone_index(trained), faiss.clone_index(trained)
    plain.add(x)
    add_assigned(ours, faiss.clone_index(trained.quantizer), x)
    plain.nprobe = ours.nprobe = 4
    np.testing.assert_array_equal(plain.search(x[:50], 10)[1], ours.search(x[:50], 10)[1])


def test_too_small_a_catalog_for_ivfpq_is_a_clear_error(tmp_path):
    from galclip.search.catalog import CatalogError

    _catalog(tmp_path, 200)
    with pytest.raises(CatalogError, match="too few to train IVF-PQ"):
        build_index(tmp_path, "image", kind="ivfpq", verbose=False)


def test_lists_grow_with_the_catalog_at_a_fixed_size():
    """nlist ~ N / 500 (lists of fixed size, so a query scans as many codes at 10⁸ as at 10⁶),
    at least sqrt(N), and never more than N / 39 (k-means' points per centroid)."""
    from galclip.search.ivfpq import default_nlist

    assert default_nlist(10_000_000) == 20_000 and default_nlist(100_000_000) == 200_000
    assert default_nlist(10_000) == 100  # sqrt(N) where N / 500 would be fewer
    assert default_nlist(1_000) == 25  # capped at N / 39
    assert default_nlist(0) == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ivfsq8", "ivf"])
def test_many_lists_use_an_hnsw_quantizer_and_keep_recall(cat, kind, monkeypatch):
    """From HNSW_QUANTIZER_FROM lists the centroids come from a two-level k-means and are
    found through an HNSW graph, whose efSearch follows nprobe; recall still reaches the
    target, and the saved index loads with the same quantizer and search depth."""
    import faiss

    from galclip.search import ivfpq

    monkeypatch.setattr(ivfpq, "HNSW_QUANTIZER_FROM", 64)
    path, img, spec, _, present = cat
    built = build_index(path, "image", kind=kind, nlist=200, verbose=False,
                        compress={"part_vectors": 6000, "chunk_rows": 2048} if kind != "ivf" else None)
    assert built.info["recall_at_10"] >= 0.95
    loaded = load_index(path, "image")
    first = loaded.index.parts[0] if kind == "ivfsq8" else loaded.index
    quantizer = faiss.downcast_index(first.quantizer)
    assert isinstance(quantizer, faiss.IndexHNSWFlat) and first.nlist == 200
    nprobe = built.info["search_param"]
    assert first.nprobe == nprobe and quantizer.hnsw.efSearch == max(ivfpq.QUANTIZER_EF_MIN, 2 * nprobe)
    # centroids are unit vectors (spherical k-means), each list holds vectors
    c = quantizer.reconstruct_n(0, 200)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1, atol=1e-4)
    sizes = np.array([first.invlists.list_size(i) for i in range(200)])
    assert (sizes > 0).mean() > 0.9
    rng = np.random.default_rng(8)
    q = np.concatenate([img[rng.choice(N, 200, replace=False)],
                        spec[present["spectrum"]][rng.choice(N * 4 // 5, 200, replace=False)]])
    assert _recall(loaded, img, q) >= 0.9


@pytest.mark.slow
def test_rerank_lifts_ivfpq_recall_past_its_codes_and_survives_a_reload(tmp_path):
    """IVF-PQ with 4-byte codes cannot order close neighbours; re-ranking its 10 x k best with
    the float16 vectors kept on disk can, and the loaded index memory-maps that file."""
    path = tmp_path / "c"
    img, spec, meta, present = _catalog(path, 6000)
    plain = build_index(path, "image", kind="ivfpq", save=False, verbose=False,
                        compress={"pq_m": 4, "chunk_rows": 2048})
    built = build_index(path, "image", kind="ivfpq", verbose=False,
                        compress={"pq_m": 4, "chunk_rows": 2048, "rerank": 10, "part_vectors": 2500})
    assert plain.info["recall_at_10"] < 0.7, plain.info["recall_at_10"]
    assert built.info["recall_at_10"] >= 0.95
    assert built.info["rerank"] == {"file": "index-image.rerank.f16", "factor": 10,
                                    "dtype": "float16", "bytes": 6000 * 32 * 2}
    assert built.info["index_bytes"] == 6000 * (4 + 8)    # in memory: the codes, not the vectors
    loaded = load_index(path, "image")
    assert isinstance(loaded.index.rerank, np.memmap) and loaded.index.rerank_factor == 10
    rng = np.random.default_rng(3)
    q = img[rng.choice(6000, 200, replace=False)]
    assert _recall(loaded, img, q) >= 0.95 > _recall(plain, img, q) + 0.2
    s, p = loaded.index.search(q[:5], 10)
    np.testing.assert_allclose(s, np.einsum("qkd,qd->qk", img[loaded.rows[p]], q[:5]), atol=2e-3)
    assert np.all(np.diff(s, axis=1) <= 1e-6)          # ordered by the exact inner product
    # stored vectors come from the file (float16), not from the codes
    np.testing.assert_allclose(loaded.vector(int(np.flatnonzero(loaded.rows == 5)[0])), img[5],
                               atol=1e-3)


@pytest.mark.slow
def test_rerank_keeps_filtered_search_exact_within_the_filter(tmp_path):
    from galclip.search import api

    path = tmp_path / "c"
    img, spec, meta, present = _catalog(path, 6000)
    for m in ("image", "spectrum"):
        build_index(path, m, kind="ivfpq", verbose=False,
                    compress={"pq_m": 4, "chunk_rows": 2048, "rerank": 10})
    c = api.Catalog(path)
    spec_rows = np.flatnonzero(present["spectrum"])
    hits = []
    for row, where in [(7, "redshift > 0.3"), (11, "redshift > 0.97"), (19, "dec > 0")]:
        res = c.search(id=int(meta["object_id"][row]), to="spectrum", k=10, where=where)
        allowed = apply_where(parse_where(where), meta, 6000) & present["spectrum"]
        got = [(n["object_id"] - 11) // 3 for n in res.neighbours]
        assert len(got) == 10 and all(allowed[g] for g in got)
        best = spec_rows[allowed[spec_rows]][np.argsort(-(spec[allowed] @ img[row]))[:10]]
        hits.append(len(np.intersect1d(got, best)) / 10)
    assert np.mean(hits) >= 0.9, hits


def test_a_truncated_rerank_file_is_a_clear_error(tmp_path):
    from galclip.search.catalog import CatalogError

    path = tmp_path / "c"
    _catalog(path, 3000)
    build_index(path, "image", kind="ivfpq", verbose=False,
                compress={"pq_m": 4, "chunk_rows": 2048, "rerank": 5})
    f = path / "index-image.rerank.f16"
    f.write_bytes(f.read_bytes()[:-64])
    with pytest.raises(CatalogError, match=r"index-image\.rerank\.f16.*re-rank file holds"):
        load_index(path, "image")


def test_rerank_on_an_exact_index_is_refused(tmp_path):
    path = tmp_path / "c"
    _catalog(path, 3000)
    with pytest.raises(ValueError, match="re-ranking applies to the compressed kinds"):
        build_index(path, "image", kind="flat", verbose=False, compress={"rerank": 5})


def test_galclip_index_cli_rerank(tmp_path, capsys):
    from galclip.cli import main

    _catalog(tmp_path, 3000)
    assert main(["index", str(tmp_path), "--kind", "ivfpq", "--pq-m", "4", "--rerank", "10",
                 "--modalities", "image"]) == 0
    assert "re-ranking 10 x k from index-image.rerank.f16" in capsys.readouterr().out
    assert (tmp_path / "index-image.rerank.f16").stat().st_size == 3000 * 32 * 2
    # rebuilt without re-ranking: the old file goes with the old index
    assert main(["index", str(tmp_path), "--kind", "ivfpq", "--pq-m", "4",
                 "--modalities", "image"]) == 0
    assert not (tmp_path / "index-image.rerank.f16").exists()
