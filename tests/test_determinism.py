"""Determinism: the same seed and settings give the same run on the CPU, bit for bit.

Two in-process `train(cfg)` calls into two folders must agree on every metric but the timing columns and
on every weight, optimiser buffer and schedule counter; a third run with another seed must not (so the
comparison can fail, and the seed really drives weights, data order, augmentation and dropout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _reliability import assert_same_run, non_timing_metrics

from cnnlab import checkpoint
from cnnlab.training import train


def config(out: Path, seed: int = 7) -> dict[str, Any]:
    # The paper recipe on 8x8 digits: dropout, random crops after padding, flips and PCA lighting all on.
    return dict(
        model="alexnet_small", model_opt=["width=0.25"], dataset="digits", input_size=8, batch_size=32,
        limit_train=128, limit_val=64, lr=0.01, patience=1, epochs=3, seed=seed, device="cpu",
        progress="none", out=str(out), report=False,
    )  # fmt: skip


def test_same_seed_same_run(tmp_path: Path) -> None:
    first = train(config(tmp_path / "a"))
    second = train(config(tmp_path / "b"))
    assert first.stopped is None and second.stopped is None
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert [r["val_top1_err"] for r in first.history] == [r["val_top1_err"] for r in second.history]
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key

    other = train(config(tmp_path / "c", seed=8))
    a = checkpoint.load(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    c = checkpoint.load(tmp_path / "c" / "checkpoints" / "last.pt")["model"]
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    assert non_timing_metrics(tmp_path / "a" / "metrics.csv") != non_timing_metrics(
        tmp_path / "c" / "metrics.csv"
    )
    assert other.history[0]["train_loss"] != first.history[0]["train_loss"]


def test_the_run_does_not_depend_on_the_global_random_state(tmp_path: Path) -> None:
    """Whatever the caller did to torch's global generator before, train() seeds what it uses."""
    torch.manual_seed(123)
    torch.rand(1000)
    train({**config(tmp_path / "a"), "epochs": 1})
    torch.manual_seed(999)
    train({**config(tmp_path / "b"), "epochs": 1})
    assert_same_run(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("stop_after", [1, 4, 5])  # 4 steps an epoch: mid-epoch, last step, after
def test_a_stopped_and_resumed_run_is_the_same_run(tmp_path: Path, stop_after: int) -> None:
    """Stopping after a step (mid-epoch) or after an epoch boundary and resuming changes nothing."""
    cfg = {**config(tmp_path / "whole"), "epochs": 2}
    train(cfg)
    part = {**cfg, "out": str(tmp_path / "part"), "stop_after": stop_after}
    assert train(part).stopped == "stop_after"
    resumed = train({"out": str(tmp_path / "part"), "resume": True, "progress": "none"})
    assert resumed.stopped is None
    assert_same_run(tmp_path / "whole", tmp_path / "part")
