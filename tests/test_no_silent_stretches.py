"""Each long step says what it does (issue 24): --compile's compilation, `compare`'s timing with an
estimate per model, and a network's input larger than the images (28 -> 224 px) in the plan line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _reliability import TINY_BASE, run_cli

from cnnlab.compare import compare
from cnnlab.training.plan import Eta


def test_compare_says_what_it_times_with_an_estimate_for_the_rest() -> None:
    said: list[str] = []
    rows = compare(["lenet5", "alexnet_small", "lenet5"], (1, 32, 32), batch_size=2, num_classes=10,
                   device="cpu", warmup=0, steps=1, progress=said.append)  # fmt: skip
    assert len(rows) == 3 and all(r.train_ips for r in rows)
    assert said[0].startswith("timing 3 models on cpu at batch 2: 1 forward passes and 1 training steps each")
    assert said[1] == "[1/3] timing lenet5 ..."
    assert said[2].startswith("[1/3] lenet5 timed in ") and "more for the other 2" in said[2]
    assert said[3] == "[2/3] timing alexnet_small ..."
    assert said[4].startswith("[2/3] alexnet_small timed in ") and "more for the other 1" in said[4]
    assert said[6].startswith("[3/3] lenet5 timed in ") and "more" not in said[6]
    said.clear()
    compare(["lenet5"], (1, 32, 32), batch_size=2, num_classes=10, timed=False, progress=said.append)
    assert said == []  # counting alone is quick: nothing to announce


def test_the_plan_says_when_images_are_upsampled_to_the_networks_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [a for a in TINY_BASE if a not in ("--input-size", "8")]
    argv = ["train", *base, "--model-opt", "width=0.25", "--input-size", "32", "--progress", "lines",
            "--epochs", "1", "--stop-after", "1", "--out", str(tmp_path / "run")]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    plan = next(line for line in out.splitlines() if line.startswith("plan:"))
    assert "the 8 px images are upsampled to 32 px, alexnet_small's input size (16x the pixels" in plan
    code, out, err = run_cli(
        ["train", *TINY_BASE, "--progress", "lines", "--epochs", "1", "--stop-after", "1",
         "--out", str(tmp_path / "native")], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "upsampled" not in out


def test_compile_says_it_is_compiling_and_the_eta_leaves_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)  # the messages, not the compiler
    argv = ["train", *TINY_BASE, "--model-opt", "width=0.25", "--compile", "--progress", "lines",
            "--epochs", "2", "--out", str(tmp_path / "run")]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    lines = out.splitlines()
    plan = next(i for i, line in enumerate(lines) if line.startswith("plan:"))
    assert lines[plan + 1].startswith("compile: torch.compile is compiling the training step")
    assert lines[plan + 2].startswith("compile: the training step compiled and ran in ")
    assert sum(line.startswith("compile: compiling the evaluation graph") for line in lines) == 1


def test_an_evaluation_that_compiled_does_not_set_the_pace_of_the_others() -> None:
    eta = Eta(total_steps=40, done_steps=0, epochs_left=4)
    for _ in range(12):
        eta.step()
    eta.evaluated(100.0, compiling=True)
    assert eta.eval_seconds == [] and eta.epochs_left == 3
    eta.evaluated(2.0)
    assert eta.eval_seconds == [2.0] and eta.evaluations == 2
