"""Every bad command-line value: exit status 2 and a message naming the option or config key,
never a traceback and never a silently different run (one table over the issue's cases)."""
from __future__ import annotations

import pytest

from galclip.cli import main


def _run(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:          # argparse: usage error
        rc = e.code
    return rc, capsys.readouterr().err


def _cuda_present() -> bool:
    import torch

    return torch.cuda.is_available()


EMBED = ["embed", "--model", "m.ckpt", "--data", "d", "--out", "o"]
INDEX = ["index", "cat"]
SERVE = ["serve", "cat"]
SIM = ["simulate", "--out", "o"]
BUILD = ["build-dataset", "--spectra", "s.fits"]
# (argv, text the message must contain); paths that exist are filled in by the test
PARSE_CASES = [
    (BUILD + ["--out", "{file}"], "--out"),
    (BUILD + ["--out", "o", "--match-radius", "nan"], "--match-radius"),
    (BUILD + ["--out", "o", "--match-radius", "-1"], "--match-radius"),
    (BUILD + ["--out", "o", "--shard-size", "0"], "--shard-size"),
    (EMBED + ["--batch-size", "0"], "--batch-size"),
    (EMBED + ["--batch-size", "-1"], "--batch-size"),
    (EMBED + ["--batch-size", "two"], "--batch-size"),
    (EMBED + ["--rows-per-shard", "-5"], "--rows-per-shard"),
    (EMBED + ["--modalities", "foo"], "--modalities"),
    (EMBED + ["--modalities", ""], "--modalities"),
    (EMBED + ["--device", "bogus"], "--device"),
    (EMBED[:-1] + ["{file}"], "--out"),
    (INDEX + ["--nlist", "-1"], "--nlist"),
    (INDEX + ["--rerank", "-1"], "--rerank"),
    (INDEX + ["--nlist", "0"], "--nlist"),
    (INDEX + ["--threshold", "-1"], "--threshold"),
    (INDEX + ["--target-recall", "2"], "--target-recall"),
    (INDEX + ["--target-recall", "0"], "--target-recall"),
    (INDEX + ["--target-recall", "nan"], "--target-recall"),
    (INDEX + ["--modalities", "radio"], "--modalities"),
    (SERVE + ["--port", "-1"], "--port"),
    (SERVE + ["--port", "70000"], "--port"),
    (SERVE + ["--max-upload-mb", "-1"], "--max-upload-mb"),
    (SERVE + ["--cache-mb", "-5"], "--cache-mb"),
    (SERVE + ["--upload-threads", "0"], "--upload-threads"),
    (SERVE + ["--read-timeout", "0"], "--read-timeout"),
    (SERVE + ["--workers", "0"], "--workers"),
    (SIM + ["--n", "10", "--workers", "0"], "--workers"),
    (SIM + ["--n", "10", "--workers", "-3"], "--workers"),
    (SIM + ["--n", "0"], "--n"),
    (SIM + ["--n", "10", "--mag-limit", "inf"], "--mag-limit"),
    (SIM + ["--n", "10", "--shard-size", "-1"], "--shard-size"),
    (["search", "cat", "--id", "1", "--k", "1000000000"], "--k"),
    (["search", "cat", "--id", "1", "--k", "0"], "--k"),
    (["demo", "--n", "0"], "--n"),
    (["demo", "--workers", "0"], "--workers"),
    (["pretrain", "image", "--data", "d", "--out", "o", "optim.lr=fast"], "'optim.lr' must be"),
    (["align", "--data", "d", "--out", "o", "trainer.max_epochs=-1"], "'trainer.max_epochs' must be >= 1"),
    (["align", "--data", "d", "--out", "o", "train.epochs=3"], "use 'trainer.max_epochs'"),
    (["align", "--data", "d", "--out", "o", "model=3"], "'model' must be a mapping"),
    (["align", "--data", "d", "--out", "o", "data.batch_size=[1, 2]"], "'data.batch_size'"),
    (["align", "--config", "{yaml}", "--data", "d", "--out", "o"], "'data.batch_size'"),
    (["pretrain", "spectrum", "--config", "{yaml_lr}", "--data", "d", "--out", "o"],
     "'optim.lr' must be a number"),
    (["evaluate", "--model", "m", "--data", "d", "--out", "o", "knn.k=ten"], "must be"),
]


@pytest.mark.parametrize("argv,text", PARSE_CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in
                                                         PARSE_CASES])
def test_bad_arguments_exit_2_naming_the_option(tmp_path, monkeypatch, capsys, argv, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "bad.yaml").write_text("data:\n  batch_size: [1, 2]\n")
    (tmp_path / "lr.yaml").write_text("optim:\n  lr: fast\n")
    argv = [a.format(file="a-file", yaml="bad.yaml", yaml_lr="lr.yaml") for a in argv]
    rc, err = _run(argv, capsys)
    assert rc == 2, (argv, err)
    assert text in err and "Traceback" not in err, err


@pytest.mark.skipif("_cuda_present()")
def test_cuda_device_without_a_gpu_is_a_usage_error(capsys):
    rc, err = _run(EMBED + ["--device", "cuda"], capsys)
    assert rc == 2 and "--device" in err and "no CUDA GPU" in err


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from search_fixtures import build_all

    return build_all(tmp_path_factory.mktemp("cli-args")).catalog


@pytest.mark.slow
def test_bad_values_known_only_from_the_catalog(catalog, capsys):
    rc, err = _run(["search", str(catalog), "--id", "0", "--columns", "object_id,nope"], capsys)
    assert rc == 2 and "--columns" in err and "nope" in err
    rc, err = _run(["index", str(catalog), "--kind", "ivf", "--nlist", "100000"], capsys)
    assert rc == 2 and "--nlist 100000" in err and "Traceback" not in err


@pytest.mark.parametrize("module", ["galclip", "galclip.cli"])
def test_python_dash_m_runs_the_command_line(module):
    """``python -m galclip`` and ``python -m galclip.cli`` are the ``galclip`` script: its
    usage, and a bad command's exit status 2."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "predict" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", module, "no-such-command"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
