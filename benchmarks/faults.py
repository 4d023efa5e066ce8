"""Fault injection, the long form of tests/test_exact_resume.py and tests/test_io_faults.py.

For each long command on a small simulated survey -- simulate, build-dataset (synthetic
Multimodal-Universe-format inputs, benchmarks/build_dataset.py), pretrain spectrum, align, embed,
index, evaluate and demo (the ``tiny`` preset) -- one uninterrupted reference run, then trials
that ``kill -9`` the command at a random moment of its run, rerun it to the end and compare the
output with the reference. "Identical" per command:

- simulate, embed: the manifest's shard list (file names and sha256: every data file
  byte-identical); build-dataset: the same, and ``rejects.csv`` byte-identical;
- pretrain, align: every tensor of the exported weights, bit for bit;
- index: every index file (the FAISS files, re-rank files) byte-identical;
- evaluate: ``metrics.json`` equal but for what records when, how and how long it ran
  (``provenance.created`` and ``.command``, ``timings_s``, each reference's ``seconds``, the
  wall time in a baseline's budget text): every figure, split, note and input fingerprint;
- demo (run where its reference ran: its files record their inputs' paths): all of the above
  for its stages at once -- dataset shards, both encoders' and the model's tensors, the
  catalog's rows (not its files' bytes, whose metadata quote the model file's sha256, and a
  resumed alignment records in that file the step it resumed from), the index files, the
  evaluation's figures (the same fields left out, and the model file's sha256).

Then the disk faults on a real small tmpfs (``mount -t tmpfs``, root only; skipped otherwise): a
full disk (simulate, embed and pretrain onto a tmpfs nearly full), a read-only output folder (a tmpfs mounted
read-only), an input folder that vanishes mid-run (the dataset deleted while ``embed`` reads
it). Each fault trial must end with exit code 2 and one line on stderr, no traceback, and the
rerun (space freed, folder writable) must resume to the reference output.

Counts (trials, identical outputs, clean errors, tracebacks, other failures) are printed and
written as JSON; figures in benchmarks/RESULTS.md.

    python benchmarks/faults.py --out /tmp/faults --kills all=8 [index=20 ...] [--seed 0]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
TRAIN = ["trainer.progress_bar=false", "trainer.checkpoint_every_n_steps=2", "optim.warmup_steps=1"]


def galclip(*args: str) -> list[str]:
    return [sys.executable, "-m", "galclip.cli", *args]


#: evaluate on 80 galaxies: k-NN, probes and both supervised baselines, a few epochs each
EVAL = ["knn.k=8", "retrieval.pool_size=10", "plots.embedding_map=pca", "plots.dpi=40",
        "baselines.image.epochs=2", "baselines.spectrum.epochs=2",
        "baselines.image.max_seconds=100000", "baselines.spectrum.max_seconds=100000"]
#: what metrics.json records about the run itself (when, how, how long) rather than its results
RUN_FIELDS = {"created", "command", "seconds", "timings_s"}


def commands(work: Path) -> dict[str, tuple[list[str], Path, str]]:
    """name -> (argv with OUT for the output folder, an input prepared by the reference runs,
    how to compare); in the order the reference runs need."""
    d, enc, m, cat = work / "ref-simulate", work / "ref-pretrain", work / "ref-align", work / "ref-embed"
    mmu = work / "mmu"
    return {
        "simulate": (galclip("simulate", "--n", "80", "--shard-size", "20", "--workers", "1",
                             "--no-progress", "--out", "OUT"), d, "manifest"),
        "build-dataset": (galclip("build-dataset", "--mmu", str(mmu), "--shard-size", "40",
                                  "--no-progress", "--out", "OUT"), mmu, "build"),
        "pretrain": (galclip("pretrain", "spectrum", "--config", "spectrum-cpu", "--data", str(d),
                             "--out", "OUT", "data.batch_size=16", "trainer.max_steps=10", *TRAIN),
                     enc, "weights"),
        "align": (galclip("align", "--config", "cpu", "--data", str(d), "--out", "OUT",
                          "--spectrum-encoder", str(enc / "encoder.safetensors"),
                          "model.embed_dim=32", "data.batch_size=16", "data.val_batch_size=64",
                          "trainer.max_epochs=3", *TRAIN), m, "weights"),
        "embed": (galclip("embed", "--model", str(m / "model.safetensors"), "--data", str(d),
                          "--out", "OUT", "--rows-per-shard", "16", "--batch-size", "16"),
                  cat, "manifest"),
        "index": (galclip("index", "OUT", "--kind", "ivf", "--nlist", "4"), cat, "index"),
        "evaluate": (galclip("evaluate", "--model", str(m / "model.safetensors"), "--data", str(d),
                             "--out", "OUT", *EVAL), m, "metrics"),
        "demo": (galclip("demo", "--preset", "tiny", "--out", "OUT"), d, "demo"),
    }


def make_mmu_inputs(folder: Path, n: int = 200) -> None:
    """Synthetic Multimodal Universe files (Legacy Survey cutouts, DESI spectra) for build-dataset."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_dataset import make_inputs

    folder.mkdir(parents=True, exist_ok=True)
    make_inputs(folder, n)


def run(argv: list[str], out: Path, kill_after: float | None = None) -> tuple[int, str, float]:
    argv = [str(out) if a == "OUT" else a for a in argv]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        try:
            p.wait(kill_after)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
    _, err = p.communicate()
    return p.returncode, err, time.monotonic() - t0


def results_of(metrics):
    """metrics.json without what records when and how long the run took: the keys
    ``created``, ``command``, ``seconds`` and ``timings_s`` anywhere, and the wall time in a
    baseline's budget text ("ran 2 epochs in 14 s")."""
    if isinstance(metrics, dict):
        return {k: results_of(v) for k, v in metrics.items() if k not in RUN_FIELDS}
    if isinstance(metrics, list):
        return [results_of(v) for v in metrics]
    if isinstance(metrics, str):
        return re.sub(r"\bin [\d.]+ s\b", "in - s", metrics)
    return metrics


def digest(out: Path, how: str) -> str:
    """A fingerprint of what a command wrote to ``out``, compared as the module docstring says."""
    h = hashlib.sha256()
    if how in ("manifest", "build"):
        for s in json.loads((out / "manifest.json").read_text())["shards"]:
            h.update(f"{s['file']}:{s['sha256']}".encode())
        if how == "build":
            h.update((out / "rejects.csv").read_bytes())
    elif how == "weights":
        from safetensors.torch import load_file

        f = next(out.glob("*.safetensors"))
        for k, v in sorted(load_file(f).items()):
            h.update(k.encode() + v.numpy().tobytes())
    elif how == "index":
        for f in sorted(out.glob("index-*")):
            if f.suffix != ".json":
                h.update(f.name.encode() + f.read_bytes())
    elif how in ("metrics", "demo-metrics"):
        metrics = results_of(json.loads((out / "metrics.json").read_text()))
        if how == "demo-metrics":                      # the model file's bytes: see below
            model = metrics["provenance"]["model"]
            model.pop("sha256"), model["training"].pop("resumed_from_step", None)
        h.update(json.dumps(metrics, sort_keys=True).encode())
    elif how == "table":                               # a catalog's rows, not its files' bytes
        import pyarrow as pa
        import pyarrow.parquet as pq

        for s in json.loads((out / "manifest.json").read_text())["shards"]:
            table = pq.read_table(out / s["file"]).replace_schema_metadata(None)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            h.update(s["file"].encode() + sink.getvalue().to_pybytes())
    else:
        # demo: every stage's output. A resumed alignment records the step it resumed from in
        # the model file's metadata, so the file's sha256 (which the catalog's shards and the
        # report's provenance quote) tells a resumed run; its tensors, the catalog's rows and
        # every figure are what must not change
        parts = [("data", "manifest"), ("pretrain-image", "weights"), ("pretrain-spectrum", "weights"),
                 ("align", "weights"), ("catalog", "table"), ("catalog", "index"),
                 ("report", "demo-metrics")]
        for folder, kind in parts:
            h.update(digest(out / folder, kind).encode())
    return h.hexdigest()


class Tally:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, kind: str, command: str, outcome: str, detail: str = "") -> None:
        self.rows.append({"kind": kind, "command": command, "outcome": outcome, "detail": detail})
        print(f"{kind:10s} {command:9s} {outcome:10s} {detail}", flush=True)

    def summary(self) -> dict:
        out = {"trials": len(self.rows)}
        for o in ("identical", "clean", "traceback", "different", "failed"):
            out[o] = sum(r["outcome"] == o for r in self.rows)
        return out


def fresh(src: Path, dst: Path, how: str) -> None:
    """The output folder a trial starts from: empty, or (index) a copy of the catalog."""
    shutil.rmtree(dst, ignore_errors=True)
    if how == "index":
        shutil.copytree(src, dst)
        for f in dst.glob("*index-*"):
            f.unlink()


def kill_trials(work: Path, kills: dict[str, int], rng: random.Random, tally: Tally,
                only: list[str] | None = None) -> None:
    cmds = commands(work)
    if not (work / "mmu").exists():
        make_mmu_inputs(work / "mmu")
    refs = {"build-dataset": work / "ref-build", "index": work / "ref-index",
            "evaluate": work / "ref-evaluate"}
    for name, (argv, ref, how) in cmds.items():
        if only and name not in only:
            continue
        # the demo's files record the paths of their inputs (the model's metadata, the catalog's
        # and report's provenance): its reference runs where the trials run, then moves aside
        ref_out = refs.get(name, ref) if name != "demo" else work / "trial-demo"
        if name == "index":
            fresh(ref, ref_out, how)
        shutil.rmtree(ref_out, ignore_errors=True) if name == "demo" else None
        rc, err, seconds = run(argv, ref_out)
        if rc != 0:
            raise SystemExit(f"reference {name} failed:\n{err}")
        want = digest(ref_out, how)
        if name == "demo":
            shutil.rmtree(work / "ref-demo", ignore_errors=True)
            ref_out.rename(work / "ref-demo")
        print(f"reference {name}: {seconds:.1f} s", flush=True)
        for _ in range(kills.get(name, kills.get("all", 0))):
            out = work / f"trial-{name}"
            fresh(ref, out, how)
            at = rng.uniform(0.05, 0.95) * seconds
            rc1, _, _ = run(argv, out, kill_after=at)
            rc, err, _ = run(argv, out)
            if rc != 0:
                tally.add("kill", name, "traceback" if "Traceback" in err else "failed",
                          f"killed at {at:.1f} s; rerun rc {rc}: {err.strip().splitlines()[-1:]}")
            else:
                try:
                    same = digest(out, how) == want
                except (OSError, ValueError, KeyError, StopIteration) as e:   # an output missing
                    tally.add("kill", name, "different", f"killed at {at:.1f} s; output unreadable: {e}")
                    continue
                tally.add("kill", name, "identical" if same else "different",
                          f"killed at {at:.1f} s ({'killed' if rc1 == -9 else f'finished first, rc {rc1}'})")


def mount(path: Path, opts: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def clean_error(rc: int, err: str) -> tuple[str, str]:
    # progress bars share stderr (carriage returns, no newline at their end)
    lines = [ln[ln.index("galclip "):] for ln in err.replace("\r", "\n").splitlines()
             if re.search(r"galclip [\w-]+: error: ", ln)]
    if "Traceback" in err:
        return "traceback", err.strip().splitlines()[-1]
    if rc == 2 and lines:
        return "clean", lines[-1]
    return "failed", f"rc {rc}: {err.strip()[-200:]}"


def disk_trials(work: Path, tally: Tally) -> None:
    cmds = commands(work)
    # pretrain: 20 MB free under its first 42 MB checkpoint (160 MB in all: a rerun's atomic
    # checkpoint replace holds the old and the new one at once)
    for name, size_mb, left_kb in (("simulate", 40, 8000), ("embed", 3, 60), ("pretrain", 160, 20000)):
        argv, ref, how = cmds[name]                        # a full disk, then space freed
        mnt = work / f"mnt-{name}"
        if not mount(mnt, f"size={size_mb}m"):
            print("mount -t tmpfs refused: disk faults skipped", flush=True)
            return
        try:
            out, filler = mnt / name, mnt / "filler"
            filler.write_bytes(b"\0" * (size_mb * 1024 * 1024 - left_kb * 1024))
            rc, err, _ = run(argv, out)
            outcome, line = clean_error(rc, err)
            tally.add("full-disk", name, outcome, line)
            filler.unlink()
            rc, err, _ = run(argv, out)
            same = rc == 0 and digest(out, how) == digest(ref, how)
            tally.add("full-disk", name, "identical" if same else clean_error(rc, err)[0],
                      "rerun after freeing space")
        finally:
            umount(mnt)
    ro = work / "ro"
    if mount(ro, "size=8m,ro"):                              # a read-only output folder
        try:
            for name in ("simulate", "embed", "pretrain"):
                argv, _, _ = cmds[name]
                rc, err, _ = run(argv, ro / name)
                tally.add("read-only", name, *clean_error(rc, err))
        finally:
            umount(ro)
    # an input that vanishes mid-run: the dataset deleted while embed reads it
    argv, ref, how = cmds["embed"]
    data = work / "vanishing"
    shutil.copytree(work / "ref-simulate", data)
    argv = [str(data) if a == str(work / "ref-simulate") else a for a in argv]
    out = work / "trial-vanish"
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.Popen([str(out) if a == "OUT" else a for a in argv], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while p.poll() is None and not out.exists():          # embed has opened the dataset
        time.sleep(0.05)
    shutil.rmtree(data, ignore_errors=True)
    _, err = p.communicate()
    tally.add("vanished", "embed", *(clean_error(p.returncode, err) if p.returncode else
                                    ("failed", "finished before the input vanished")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="work folder (emptied)")
    ap.add_argument("--kills", nargs="+", default=["all=8"], metavar="NAME=N",
                    help="kill trials per command (all=N for every command not named)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="only these commands' references and trials, in --out as it is (their "
                         "inputs from an earlier run there; build-dataset and demo need none)")
    ap.add_argument("--no-disk", action="store_true", help="skip the tmpfs disk faults")
    ap.add_argument("--disk-only", action="store_true",
                    help="only the disk faults, reusing the reference outputs in --out")
    args = ap.parse_args()
    tally = Tally()
    if not args.disk_only:
        if not args.only:
            shutil.rmtree(args.out, ignore_errors=True)
        args.out.mkdir(parents=True, exist_ok=True)
        kills = {k: int(v) for k, v in (a.split("=") for a in args.kills)}
        kill_trials(args.out, kills, random.Random(args.seed), tally, args.only)
    if not args.no_disk:
        disk_trials(args.out, tally)
    summary = tally.summary()
    name = ("faults-disk.json" if args.disk_only else
            f"faults-{'-'.join(args.only)}.json" if args.only else "faults.json")
    (args.out / name).write_text(json.dumps({"summary": summary, "trials": tally.rows}, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
