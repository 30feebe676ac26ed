"""The fast recipe: its short-run schedule, its mixed precision, its network, a small subset that learns."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from conftest import needs_fashion_mnist

from cnnlab import device, models
from cnnlab.device import fast_amp_dtype
from cnnlab.errors import CnnlabError
from cnnlab.training import TrainConfig, train
from cnnlab.training.recipes import Facts, Schedule, resolve


def test_onecycle_peaks_lower_when_the_run_is_too_short_to_warm_up() -> None:
    long = Schedule("onecycle", 0.15, 2000, 0.25, 0, 0, min_warmup_steps=50)
    assert max(long.lr(i) for i in range(2000)) == pytest.approx(0.15)  # 500 steps of rise: untouched
    short = Schedule("onecycle", 0.15, 28, 0.25, 0, 0, min_warmup_steps=50)  # 1,000 images, 4 epochs
    lrs = [short.lr(i) for i in range(28)]
    assert max(lrs) == pytest.approx(0.15 * 7 / 50) and lrs.index(max(lrs)) == 6
    assert lrs[0] == pytest.approx(0.15 / 50)  # the first step rises as steeply as a 50-step warm-up
    assert lrs[-1] == 0.0


def test_onecycle_falls_to_its_floor_and_holds_it_for_the_last_epochs() -> None:
    held = Schedule("onecycle", 0.07, 200, 0.25, 0, 0, floor=0.05, hold_steps=40)
    lrs = [held.lr(i) for i in range(200)]
    assert (
        max(lrs) == pytest.approx(0.07) and lrs.index(max(lrs)) == 39
    )  # a quarter of the 160 before the hold
    assert lrs[159:] == [pytest.approx(0.0035)] * 41  # the fall ends at step 160 at 5% of the peak, held
    assert all(a > b for a, b in itertools.pairwise(lrs[39:160]))  # falling until then
    plain = Schedule("onecycle", 0.07, 180, 0.25, 0, 0)
    assert plain.lr(179) == 0.0 and plain.lr(44) == pytest.approx(0.07)  # no floor, no hold: to zero


def test_a_hold_needs_a_onecycle_schedule_and_epochs_before_it() -> None:
    assert resolved(schedule="onecycle", epochs=5, hold_epochs=4, lr_floor=0.1).hold_epochs == 4
    with pytest.raises(CnnlabError, match="--hold-epochs 5 leaves none of the 5 epochs"):
        resolved(schedule="onecycle", epochs=5, hold_epochs=5)
    with pytest.raises(CnnlabError, match="shape a onecycle schedule, not 'plateau'"):
        resolved(schedule="plateau", lr_floor=0.1)


def resolved(**kw: object) -> TrainConfig:
    asked = {"model": "alexnet_small", "dataset": "fashion-mnist", **kw}
    facts = Facts(28, 60_000, 28, dict(models.info("alexnet_small").switches))
    return resolve(asked, facts, "cpu")


def test_fast_recipe_takes_mixed_precision_only_where_it_is_fast() -> None:
    cfg = resolved(recipe="fast")
    assert cfg.amp_dtype == fast_amp_dtype("cpu")
    assert cfg.model_options["pool_early"] is True
    assert resolved(recipe="fast", amp=False).amp_dtype == "none"
    assert resolved(recipe="paper").amp_dtype == "none"
    assert resolved(recipe="paper", amp=True).amp_dtype == "bf16"
    assert fast_amp_dtype("cuda") == "fp16"


def test_a_run_is_evaluated_in_its_training_precision_where_the_device_runs_it_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rule every evaluation of a run's net follows (the trainer's, `cnnlab eval`'s, report.html's)."""
    for fast in ("bf16", "none"):  # a CPU with bf16 instructions, and one without
        monkeypatch.setattr(device, "fast_amp_dtype", lambda t, fast=fast: fast if t == "cpu" else "fp16")
        bf16 = torch.bfloat16 if fast == "bf16" else None
        assert device.eval_amp("bf16", "cpu") is bf16  # emulated bf16 (forced with --amp): fp32
        assert device.eval_amp("fp16", "cpu") is None  # a GPU run's checkpoint on a CPU
        assert device.eval_amp("none", "cpu") is None
        assert device.eval_amp("fp16", torch.device("cuda", 0)) is torch.float16
    assert [device.precision_words(t) for t in (None, torch.bfloat16, torch.float16)] == [
        "fp32",
        "bf16 autocast",
        "fp16 autocast",
    ]


def test_pool_early_reorders_layers_and_keeps_the_weights_compatible() -> None:
    late = models.create("alexnet_small", num_classes=10, in_channels=1, batch_norm=True)
    early = models.create("alexnet_small", num_classes=10, in_channels=1, batch_norm=True, pool_early=True)
    names = [n for n, _ in early.features.named_children()]
    assert names[:4] == ["conv1", "pool1", "bn1", "relu1"]
    assert [n for n, _ in late.features.named_children()][:4] == ["conv1", "bn1", "relu1", "pool1"]
    early.load_state_dict(late.state_dict())  # the same parameters, only the order differs
    assert early(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@needs_fashion_mnist
def test_fast_recipe_learns_on_a_1000_image_subset(tmp_path: Path) -> None:
    # 7 steps an epoch: the full 0.15 peak reached at the first epoch's end diverged
    # (chance accuracy); the recipe's 50-step minimum warm-up keeps this run learning.
    cfg = TrainConfig(
        model="alexnet_small", dataset="fashion-mnist", recipe="fast", limit_train=1000, limit_val=1000,
        epochs=4, out=str(tmp_path / "run"), progress="none",
    )  # fmt: skip
    h = train(cfg).history
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in h)
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["val_top1_err"] < 0.45  # chance is 0.9; this run ends near 0.31
