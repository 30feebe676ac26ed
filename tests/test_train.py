"""The training loop on scikit-learn's digits (real, tiny): learning, the run folder, resume, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnlab import checkpoint, report
from cnnlab.errors import CnnlabError
from cnnlab.training import TrainConfig, train


def tiny(out: Path, **kw: Any) -> dict[str, Any]:
    """A run that takes about a second: a quarter-width small AlexNet on 8x8 digits, 22 steps an epoch.
    The settings given, as a mapping: the fast recipe fills only the others."""
    base: dict[str, Any] = dict(
        model="alexnet_small", dataset="digits", recipe="fast", epochs=2, batch_size=64, input_size=8,
        lr=0.1, model_opt=["width=0.25"], flip=False, val_views="center", out=str(out), progress="none",
        report=False,
    )  # fmt: skip
    return {**base, **kw}


def non_timing(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in report.TIMING_COLUMNS} for r in report.read_metrics(path)]


def test_short_run_learns_and_writes_its_folder(tmp_path: Path) -> None:
    result = train(tiny(tmp_path / "run", epochs=4, dropout=0.0))
    h = result.history
    assert len(h) == 4
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["val_top1_err"] < 0.6  # chance is 0.9 on ten classes
    run = result.run_dir
    for name in ("config.json", "metrics.csv", "curves.png", "summary.txt", "checkpoints/last.pt",
                 "checkpoints/best.pt"):  # fmt: skip
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = report.read_metrics(run / "metrics.csv")
    # No --val-split: the validation set is the test set, written once, as test_* (no val_* copy).
    assert list(rows[0]) == list(report.metric_columns(held_out=False))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["test_top1_err"]) == pytest.approx(h[-1]["val_top1_err"])
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["lr"] == 0.1 and doc["config"]["schedule"] == "onecycle"  # resolved defaults
    assert doc["config"]["momentum"] == 0.9 and doc["config"]["label_smoothing"] == 0.1
    assert set(doc["versions"]) == {"python", "torch", "cnnlab"}
    assert doc["data"]["train"]["name"] == "digits" and len(doc["data"]["train"]["sha256"]) == 64
    assert "final test accuracy" in (run / "summary.txt").read_text()
    # Checkpoints are plain data: torch.load with weights_only=True reads them.
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model_name"] == "alexnet_small" and ckpt["num_classes"] == 10 and ckpt["in_channels"] == 1
    assert ckpt["epoch"] == 4 and ckpt["step"] == 0 and len(ckpt["metrics"]) == 4
    assert ckpt["classes"] == [str(i) for i in range(10)]
    assert set(ckpt) >= {"optimizer", "scheduler", "config", "data_stats", "augment"}
    model = checkpoint.build_model(ckpt)
    for k, v in model.state_dict().items():
        assert torch.equal(v, result.model.state_dict()[k])


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    # Dropout, random crops and flips all on: every source of randomness must replay.
    cfg = tiny(tmp_path / "a", dropout=0.5, flip=True, random_crop=True)
    whole = train(cfg)
    b = {**cfg, "out": str(tmp_path / "b")}
    first = train({**b, "stop_after": 30})  # stops in epoch 2, at step 8 of 22
    assert first.stopped == "stop_after" and len(first.history) == 1
    ckpt = checkpoint.load(tmp_path / "b" / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 8)
    assert not (tmp_path / "b" / "summary.txt").exists()  # an interrupted run does not look complete
    resumed = train({"out": str(tmp_path / "b"), "resume": True, "progress": "none"})
    assert resumed.stopped is None
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert non_timing(tmp_path / "a" / "metrics.csv") == non_timing(tmp_path / "b" / "metrics.csv")
    assert (tmp_path / "b" / "summary.txt").is_file()


def test_existing_folder_unwritable_folder_and_other_model_are_refused(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "run", epochs=1)
    train(cfg)
    with pytest.raises(CnnlabError, match="already exists; use --resume"):
        train(cfg)
    with pytest.raises(CnnlabError, match="'alexnet_small', not 'alexnet_torchvision'"):
        train({"model": "alexnet_torchvision", "out": cfg["out"], "resume": True})
    with pytest.raises(CnnlabError, match="10 classes on 'digits', not 'mnist'"):
        train({"dataset": "mnist", "out": cfg["out"], "resume": True})
    with pytest.raises(CnnlabError, match=r"--lr 0\.5"):
        train({"out": cfg["out"], "resume": True, "lr": 0.5})
    with pytest.raises(CnnlabError, match="nothing to resume"):
        train({**cfg, "out": str(tmp_path / "empty"), "resume": True})
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CnnlabError, match="cannot write to the run folder"):
        train({**cfg, "out": str(blocker / "run")})
    # --overwrite replaces a cnnlab run folder, but nothing else.
    train({**cfg, "overwrite": True})
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(CnnlabError, match="was not made by cnnlab train"):
        train({**cfg, "out": str(other), "overwrite": True})
    assert (other / "notes.txt").read_text() == "keep me"


def test_completed_run_resumes_to_more_epochs(tmp_path: Path) -> None:
    cfg = tiny(tmp_path / "run", epochs=1, schedule="plateau", patience=1)
    train(cfg)
    more = train({"out": cfg["out"], "resume": True, "epochs": 2, "progress": "none"})
    assert [r["epoch"] for r in more.history] == [1, 2]
    train({**tiny(tmp_path / "oc", epochs=1), "stop_after": 1})
    with pytest.raises(CnnlabError, match="onecycle schedule"):
        train({"out": str(tmp_path / "oc"), "resume": True, "epochs": 3})


def test_a_checkpoint_of_another_layout_is_refused_in_one_line(tmp_path: Path) -> None:
    # There is no released version to stay compatible with: a config missing a setting (one written
    # before it existed) is refused, not filled in, and the run's files are left as they were.
    train(tiny(tmp_path / "run", epochs=1, stop_after=3))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = checkpoint.load(last)
    del ckpt["config"]["min_warmup_steps"]
    checkpoint.save(ckpt, last)
    before = last.read_bytes()
    with pytest.raises(CnnlabError, match="holds no config of this cnnlab's layout; train the run again"):
        train(TrainConfig(out=str(tmp_path / "run"), resume=True, progress="none"))
    assert last.read_bytes() == before


def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = torch.nn.CrossEntropyLoss.forward

    def poisoned(self: torch.nn.CrossEntropyLoss, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = original(self, logits, y)
        return loss * float("nan") if calls["n"] == 22 + 5 else loss  # step 5 of epoch 2

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
    cfg = tiny(tmp_path / "run", epochs=3)
    with pytest.raises(CnnlabError, match="non-finite at step 5 of epoch 2"):
        train(cfg)
    ckpt = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)  # the end of epoch 1, before the bad step
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_schedules() -> None:
    from cnnlab.training.recipes import Schedule

    s = Schedule("plateau", 0.01, 100, 0.0, patience=2, max_drops=1)
    for err in (0.5, 0.4, 0.45, 0.41):  # two epochs without a new best: divide by 10
        s.end_epoch(err)
    assert s.lr(0) == pytest.approx(0.001)
    for err in (0.5, 0.5, 0.5):  # at most max_drops drops
        s.end_epoch(err)
    assert s.lr(0) == pytest.approx(0.001)
    restored = Schedule("plateau", 0.01, 100, 0.0, patience=2, max_drops=1)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict()
    oc = Schedule("onecycle", 0.4, 100, 0.25, 0, 0)
    lrs = [oc.lr(i) for i in range(100)]
    assert max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) == 24 and lrs[-1] == 0.0


def test_epoch_line_names_the_set_and_gives_error_and_accuracy() -> None:
    row = {"epoch": 2, "lr": 0.1, "train_loss": 1.0, "train_top1_err": 0.3, "val_loss": 0.9,
           "val_top1_err": 0.25, "val_top5_err": 0.01, "test_loss": 0.8, "test_top1_err": 0.2,
           "test_top5_err": 0.02, "epoch_seconds": 1.0, "images_per_s": 10.0}  # fmt: skip
    # No held-out split: one set, the test set, named test (not "val").
    line = report.epoch_line({**row, "val_top1_err": 0.2, "val_loss": 0.8}, 4, held_out=False)
    assert "val" not in line and "test loss 0.8000 top-1 err 20.00% (acc 80.00%)" in line
    line = report.epoch_line(row, 4, held_out=True)
    assert "val loss 0.9000 top-1 err 25.00% (acc 75.00%)" in line and "test top-1 err 20.00%" in line


def test_resume_says_where_it_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tiny(tmp_path / "run", epochs=2, progress="lines")
    assert train({**cfg, "stop_after": 5}).stopped == "stop_after"
    capsys.readouterr()
    train({"out": str(tmp_path / "run"), "resume": True, "progress": "lines"})
    out = capsys.readouterr().out
    assert (
        f"resumed from {tmp_path / 'run' / 'checkpoints' / 'last.pt'}: continuing at epoch 1/2 at step 6 "
        in out
    )


def test_no_eta_announced_when_nothing_is_left() -> None:
    from cnnlab.training import plan

    eta = plan.Eta(total_steps=plan.WARMUP_STEPS + 2, done_steps=0, epochs_left=1)
    for _ in range(plan.WARMUP_STEPS + 2):
        eta.step()
    eta.evaluated(0.01)
    assert eta.announcement(epoch_over=True) is None  # it said "about 0.0 s more"


def test_an_unknown_flag_gets_a_did_you_mean_in_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from cnnlab.cli import main

    for argv, wanted in ((["train", "--model", "alexnet_small", "--batchsize", "64"], "--batch-size"),
                         (["summary", "alexnet", "--inputsize", "224"], "--input-size"),
                         (["eval", "x.pt", "--veiws", "flip"], "--views")):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"(did you mean '{wanted}'?)" in err and err.count("\n") == 1, err
