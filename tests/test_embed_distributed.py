"""`galclip embed` across ranks: 2 CPU ranks (torchrun, gloo) write the same catalog as one
process, finishing a catalog a killed run left half done; worker processes keep row order."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A real tiny GalaxyCLIP checkpoint and a 17-row dataset in two shards."""
    import torch

    from galclip.models import create_encoder
    from galclip.models.clip import GalaxyCLIP, save_model
    from search_helpers import write_latent_dataset

    root = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    clip = GalaxyCLIP(create_encoder("image-nano", depth=1),
                      create_encoder("spectrum-nano", depth=1), embed_dim=8)
    return root, save_model(clip, root / "tiny.safetensors"), write_latent_dataset(
        root / "data", shards=(10, 7))


def _embed_args(model, data, out):
    return ["embed", "--model", str(model), "--data", str(data), "--out", str(out),
            "--rows-per-shard", "4", "--batch-size", "3"]


def _content(catalog: Path) -> dict:
    """The manifest without its creation time, plus every shard's bytes' sha256."""
    m = json.loads((catalog / "manifest.json").read_text())
    m["provenance"].pop("created")
    return m


@pytest.mark.slow
def test_two_gloo_ranks_finish_a_killed_run_into_the_one_process_catalog(tiny):
    import torch

    import galclip
    from galclip.cli import main
    from galclip.search.catalog import build_catalog

    root, model, data = tiny
    # one thread, as each rank below has: with two, oneDNN may pick other kernels for a batch
    # and the float bytes (so the shard sha256s) differ in the last bit on some CPUs (AMD EPYC)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_embed_args(model, data, root / "one")) == 0
        # a run killed after 2 of its 5 shards (rank-agnostic: the shard plan is the same)
        assert build_catalog(galclip.load_model(model), data, root / "two", model_path=model,
                             rows_per_shard=4, batch_size=3, max_shards=2, progress=False) is None
    finally:
        torch.set_num_threads(threads)
    done = {p.name: p.stat().st_mtime_ns for p in (root / "two" / "shards").iterdir()}
    assert len(done) == 2 and not (root / "two" / "manifest.json").exists()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(["src", str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "galclip.cli", *_embed_args(model, data, root / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180,
                          cwd=HERE.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _content(root / "two") == _content(root / "one")
    assert [s["n_rows"] for s in _content(root / "one")["shards"]] == [4, 4, 4, 4, 1]
    # finished shards were kept, not embedded again
    assert {p: (root / "two" / "shards" / p).stat().st_mtime_ns for p in done} == done


def test_a_rank_embeds_only_its_share_and_leaves_the_manifest_to_the_end(tiny, monkeypatch):
    """Rank 1 of 2 alone (no partner: collectives stubbed) writes shards 1 and 3 only."""
    import galclip
    from galclip.search import catalog

    root, model, data = tiny
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(catalog.Ranks, "barrier", lambda self: None)
    monkeypatch.setattr(catalog.Ranks, "all_gather", lambda self, obj: [obj])
    monkeypatch.setattr(catalog.Ranks, "broadcast", lambda self, obj: None)  # rank 0's answer
    out = root / "rank1"
    assert catalog.build_catalog(galclip.load_model(model), data, out, model_path=model,
                                 rows_per_shard=4, batch_size=3, progress=False) is None
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["emb-00001.parquet",
                                                                   "emb-00003.parquet"]
    assert not (out / "manifest.json").exists()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is outside WORLD_SIZE=2"):
        catalog.Ranks.from_env()


@pytest.mark.slow
def test_worker_processes_keep_rows_in_order(tiny):
    import galclip
    from galclip.data import open_dataset
    from galclip.models.inference import iter_embeddings
    from galclip.search.catalog import RowRange

    root, model, data = tiny
    clip = galclip.load_model(model)
    rows = RowRange(open_dataset(data), 2, 16)  # spans both dataset shards
    plain = list(iter_embeddings(clip, rows, batch_size=3))
    workers = list(iter_embeddings(clip, rows, batch_size=3, num_workers=2))
    assert [len(b["object_id"]) for b in workers] == [3, 3, 3, 3, 2]
    for a, b in zip(plain, workers, strict=True):
        assert (a["object_id"] == b["object_id"]).all()
        assert abs(a["image_embedding"] - b["image_embedding"]).max() < 1e-6
