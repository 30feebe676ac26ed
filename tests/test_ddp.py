"""Distributed data parallel on the CPU: `torchrun --nproc_per_node=2 -m cnnlab train` (gloo) against the
same run in one process.

For the two to agree, both must take the same optimisation steps: the global batch is the same (each rank
takes half), and here every step sees the whole (limited) training set, so the union of the two ranks'
batches is exactly the one process's batch whatever the sharding. Nothing random differs between the
ranks' and the single process's computation: no dropout, no batch norm (per-rank batch statistics), no
random crops, flips or PCA lighting. What is left is the order of float additions in the gradient
all-reduce, so the
weights agree to about 1e-6; we allow 1e-4 (relative) plus 1e-6 (absolute).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _reliability import write_idx_set
from conftest import fashion_mnist_installed

from cnnlab import checkpoint, report
from cnnlab.training import train

ARGS = {
    "model": "alexnet_small", "dataset": "digits", "recipe": "paper", "epochs": "3", "batch-size": "128",
    "limit-train": "160", "val-split": "32", "limit-val": "101", "input-size": "8", "lr": "0.05",
    "dropout": "0", "val-views": "flip", "pca-std": "0",
}  # fmt: skip
FLAGS = [
    "--no-batch-norm",
    "--no-random-crop",
    "--no-flip",
    "--model-opt",
    "width=0.25",
    "--progress",
    "lines",
    "--no-report",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A rank that ends with "terminate called without an active exception" (SIGABRT) after the run completed
# was seen in about one suite run in ten on a loaded 2-core machine, not alone; the trainer now drops the DDP
# reducer and meets the other ranks before leaving the group. Until that is shown to be enough, such a run
# is tried once more from scratch (a fresh folder and port); any other failure fails at once.
EXIT_ABORT = "terminate called without an active exception"


def _torchrun(make_cmd: Callable[[], list[str]], out: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(make_cmd(), capture_output=True, text=True, **kw)
    if proc.returncode != 0 and EXIT_ABORT in proc.stderr and "done: " in proc.stdout:
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run(make_cmd(), capture_output=True, text=True, **kw)
    return proc


@pytest.mark.slow
def test_two_process_run_matches_one_process(tmp_path: Path) -> None:
    argv = [a for k, v in ARGS.items() for a in (f"--{k}", v)] + FLAGS

    def cmd() -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "cnnlab", "train", *argv,
                "--out", str(tmp_path / "ddp")]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = _torchrun(cmd, tmp_path / "ddp", env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Only rank 0 prints and writes.
    assert proc.stdout.count("epoch 3/3  lr") == 1, proc.stdout
    doc = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert doc["distributed"]["world_size"] == 2

    single = train(dict(
        model="alexnet_small", dataset="digits", recipe="paper", epochs=3, batch_size=128, limit_train=160,
        val_split=32, limit_val=101, input_size=8, lr=0.05, dropout=0.0, val_views="flip", batch_norm=False,
        random_crop=False, flip=False, pca_std=0.0, model_opt=["width=0.25"], progress="none", out=str(tmp_path / "one"), report=False,  # noqa: E501
    ))  # fmt: skip
    ddp = checkpoint.load(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert ddp["epoch"] == 3
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    # The model moved: the comparison is not between two copies of the initial weights.
    assert ddp["metrics"][-1]["train_loss"] < ddp["metrics"][0]["train_loss"]
    # Metrics reduced over ranks equal the one-process metrics (32 held-out images split 16 + 16, the 101
    # test images 51 + 50).
    rows_ddp = report.read_metrics(tmp_path / "ddp" / "metrics.csv")
    rows_one = report.read_metrics(tmp_path / "one" / "metrics.csv")
    for a, b in zip(rows_ddp, rows_one, strict=True):
        for col in ("train_loss", "train_top1_err", "val_loss", "val_top1_err", "val_top5_err", "test_loss",
                    "test_top1_err", "lr"):  # fmt: skip
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-4, abs=1e-6), col


def _readme_torchrun_line() -> list[str]:
    """The README's two-process command, exactly as a user copies it."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    lines = [ln for ln in readme.splitlines() if ln.startswith("torchrun --nproc_per_node=2 -m cnnlab train")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("#")[0])


@pytest.mark.slow
def test_readme_torchrun_command_as_written(tmp_path: Path) -> None:
    """The README's torchrun line, report on, ends with exit 0 and a report.html (it used to crash rank 0
    with "Connection closed by peer": the report's evaluation all-reduced on rank 0 alone)."""
    argv = _readme_torchrun_line()
    assert argv[0] == "torchrun" and "--recipe" in argv, argv  # not the 90-epoch paper recipe on a CPU
    out = argv[argv.index("--out") + 1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra: list[str] = []
    if "fashion-mnist" in argv and not fashion_mnist_installed():
        # A tiny generated stand-in, found where cnnlab's cache keeps Fashion-MNIST.
        write_idx_set(tmp_path / "cache" / "fashion-mnist", n_train=256, n_test=64, side=28)
        env["CNNLAB_CACHE"] = str(tmp_path / "cache")
    elif "fashion-mnist" in argv:
        extra = ["--limit-train", "1024", "--limit-val", "512"]  # the real set: a few steps are enough

    def cmd() -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--master_addr=127.0.0.1",
                f"--master_port={_free_port()}", *argv[1:], *extra]  # fmt: skip

    proc = _torchrun(cmd, tmp_path / out, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    run = tmp_path / out
    assert (run / "report.html").is_file()
    # Rank 0 alone draws the page and names it once (after saying what it draws).
    named = [ln for ln in proc.stdout.splitlines() if ln.startswith("report: ") and ln.endswith(".html")]
    assert named == [f"report: {out}/report.html"], proc.stdout
    assert json.loads((run / "config.json").read_text())["distributed"]["world_size"] == 2
