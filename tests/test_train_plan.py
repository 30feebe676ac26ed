"""What a run says (the plan, the whole-run ETA, the final line) and what it records: the model's
switches as built, recipes that keep torchvision's layout, the paper's mean-image normalisation, tidy
metrics and readable resume refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_train import tiny

from cnnlab import checkpoint, models, report
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_checkpoints
from cnnlab.training import TrainConfig, train
from cnnlab.training.plan import layout_note
from cnnlab.training.recipes import Facts, resolve


def test_the_plan_and_an_eta_come_before_and_during_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(tiny(tmp_path / "run", progress="lines"))
    lines = capsys.readouterr().out.splitlines()
    parameters = json.loads((tmp_path / "run" / "config.json").read_text())["model"]["parameters"]
    assert lines[0] == (
        "plan: fast recipe, 2 epochs of 22 steps (batch 64) on cpu; 1,438 training, 359 test images (also "
        f"the validation set: no --val-split); alexnet_small, {parameters:,} parameters"
    )
    assert sum(line.startswith("eta: the whole run needs about ") for line in lines) == 1
    first_epoch = next(line for line in lines if line.startswith("epoch 1/2  lr"))
    assert "  run eta " in first_epoch
    assert lines[-1].startswith("done: test accuracy ")


def test_progress_none_prints_only_the_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny(tmp_path / "run"))
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("done: test accuracy ")
    train(tiny(tmp_path / "stopped", stop_after=3))
    assert capsys.readouterr().out.startswith("stopped on request (--stop-after) in epoch 1 after step 3")


def test_a_long_cpu_run_is_warned_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny(tmp_path / "run", recipe="paper", epochs=21, stop_after=1, progress="lines", batch_size=64))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("plan: paper recipe, 21 epochs of 18 steps (batch 64) on cpu; 1,198 training, ")
    assert "240 validation (held out), 359 test images" in out[0]
    assert out[1].startswith("warning: 21 epochs on a CPU likely take hours")


def resolved(model: str, **asked: Any) -> Any:
    info = models.info(model)
    settings = {"model": model, "dataset": "digits", **asked}
    return resolve(settings, Facts(0, 1000, info.input_size, dict(info.switches)), "cpu")


def test_model_options_record_every_switch_as_built() -> None:
    cfg = resolved("alexnet_small", recipe="fast", model_opt=["width=0.5"], lrn=False)
    assert cfg.model_options == {
        "activation": "relu", "lrn": False, "overlap_pool": True, "dropout": 0.0, "init": "kaiming",
        "batch_norm": True, "width": 0.5, "pool_early": True,
    }  # fmt: skip
    assert resolved("alexnet_small").model_options["dropout"] == 0.5  # the paper recipe: the model's own
    with pytest.raises(CnnlabError, match="model alexnet_small has no switch colour: valid switches are"):
        resolved("alexnet_small", model_opt=["colour=red"])


def test_the_fast_recipe_keeps_torchvision_layout() -> None:
    fast = resolved("alexnet_torchvision", recipe="fast")
    assert fast.model_options["batch_norm"] is False and fast.model_options["dropout"] == 0.0
    assert "alexnet_torchvision keeps torchvision's layout: the fast recipe's batch_norm is not applied" in (
        layout_note(fast)
    )
    asked = resolved("alexnet_torchvision", recipe="fast", batch_norm=True)
    assert asked.model_options["batch_norm"] is True and layout_note(asked) == ""
    model = models.create("alexnet_torchvision", **fast.model_options)
    assert not any("bn" in k or "running_mean" in k for k in model.state_dict())


def test_the_paper_recipe_subtracts_the_mean_image_also_on_folders_of_varying_sizes(tmp_path: Path) -> None:
    assert resolved("alexnet_small").normalize == "pixel"
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for cls in ("ant", "bee"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(count):
                size = (20 + 7 * i, 16 + 5 * i)  # no two the same
                pixels = rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / split / cls / f"{i}.png")
    cfg = TrainConfig(
        model="alexnet_small", dataset=f"folder:{tmp_path / 'imgs'}", epochs=1, batch_size=4,
        input_size=16, model_opt=["width=0.25"], out=str(tmp_path / "run"), progress="none",
    )  # fmt: skip
    result = train(cfg)
    ckpt = checkpoint.load(result.run_dir / "checkpoints" / "last.pt")
    assert ckpt["augment"]["normalize"] == "pixel" and ckpt["augment"]["resize"] == 18
    assert list(ckpt["data_stats"]["mean_image"].shape) == [3, 256, 256]  # resized to 18 when applied
    assert evaluate_checkpoints([str(result.run_dir / "checkpoints" / "last.pt")])["count"] == 4


def test_metrics_are_tidy_and_resume_refusals_read_well(tmp_path: Path) -> None:
    assert report.tidy(0.01 * 0.1**4) == 1e-06 and report._fmt(report.tidy(0.01 * 0.1**4)) == "1e-06"
    result = train(tiny(tmp_path / "run", epochs=1, model_opt=["width=0.25"], batch_norm=True))
    for row in result.history:
        assert all(v == report.tidy(v) for v in row.values() if isinstance(v, float))
    # The same switches given again (a string, a bool) are no change; another value is, in one plain line.
    again = tiny(tmp_path / "run", resume=True, epochs=1, batch_norm=True)
    assert train(again).stopped is None
    with pytest.raises(CnnlabError) as err:
        train(tiny(tmp_path / "run", resume=True, epochs=1, lr=0.5))
    assert str(err.value) == (
        "--resume keeps the run's settings: --lr 0.5 differs from the run's 0.1; drop that flag, "
        "or start a new run with another --out"
    )
