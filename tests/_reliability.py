"""Helpers shared by the reliability tests (kill/resume, hostile inputs, untrusted files, determinism).

Not a test module (no `test_` prefix): the test files import it, as tests/ is on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _formats import write_idx

from cnnlab import checkpoint, report
from cnnlab.cli import main

# A run of about a second in-process: a quarter-width small AlexNet on 8x8 digits, 4 steps an epoch.
# Dropout, random crops with padding, flips and PCA lighting are all on (the paper recipe), so every
# source of randomness has to replay for the bit-exact checks to pass.
TINY_BASE = (
    "--model", "alexnet_small", "--dataset", "digits", "--input-size", "8", "--batch-size", "32",
    "--limit-train", "128", "--limit-val", "64", "--lr", "0.01", "--patience", "1", "--device", "cpu",
    "--progress", "none", "--no-report",
)  # fmt: skip
TINY = (*TINY_BASE, "--model-opt", "width=0.25")


def tiny_argv(out: Path, epochs: int, *extra: str) -> list[str]:
    return ["train", *TINY, "--epochs", str(epochs), "--out", str(out), *extra]


def subprocess_env() -> dict[str, str]:
    """One intra-op thread, as the in-process tests use (conftest): float sums then add up in one order."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`cnnlab ARGV` in this process: (exit code, stdout, stderr); argparse's SystemExit counts as a code."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str) -> str:
    """Exit code 2 and exactly one stderr line `cnnlab: error: ...` with no traceback; returns the line."""
    lines = err.splitlines()
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("cnnlab: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def assert_no_run_left(out: Path) -> None:
    """A refused command leaves no run folder that could pass for a run (nor any folder, here)."""
    if out.exists():
        found = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        assert not (out / "summary.txt").exists(), found
        assert not list(out.glob("checkpoints/*.pt")), found
        raise AssertionError(f"a refused command left {out} behind: {found}")


def non_timing_metrics(path: Path) -> list[dict[str, str]]:
    """metrics.csv without the columns that measure time (they differ between any two runs)."""
    return [{k: v for k, v in r.items() if k not in report.TIMING_COLUMNS} for r in report.read_metrics(path)]


def assert_same_tensors(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts/lists of tensors and numbers equal bit for bit (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        same_nan = torch.equal(a.isnan(), b.isnan()) if a.is_floating_point() else True
        assert torch.equal(a, b) or (same_nan and torch.equal(a.nan_to_num(), b.nan_to_num())), (
            f"{where} differs"
        )
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same training: weights, optimiser and schedule state of last.pt and best.pt,
    and metrics.csv (minus timing columns)."""
    for name in ("last.pt", "best.pt"):
        ca, cb = checkpoint.load(a / "checkpoints" / name), checkpoint.load(b / "checkpoints" / name)
        for key in ("model", "optimizer", "scheduler", "epoch", "step", "best_val_top1_err"):
            assert_same_tensors(ca[key], cb[key], f"{name}:{key}")
    assert non_timing_metrics(a / "metrics.csv") == non_timing_metrics(b / "metrics.csv")


def write_idx_set(folder: Path, n_train: int = 48, n_test: int = 16, side: int = 8, seed: int = 0) -> Path:
    """MNIST-named IDX files (uint8 images [N, side, side], labels 0..9) for `--dataset mnist --data-dir`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return folder


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: float) -> Iterator[None]:
    """Fail (instead of waiting forever) when the body runs longer than `seconds` (main thread only)."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    if sys.platform == "win32":  # pragma: no cover - no SIGALRM
        yield
        return
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
