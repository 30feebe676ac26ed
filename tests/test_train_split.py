"""--val-split: a held-out part of the training set chooses best.pt and the lr drops; the test set is reported
apart (test_* columns). Without a split the test set is the validation set and chooses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import non_timing, tiny

from cnnlab import checkpoint, data, report
from cnnlab.errors import CnnlabError
from cnnlab.settings import VAL_SPLIT_CAP
from cnnlab.training import train
from cnnlab.training.recipes import held_out
from cnnlab.training.split import hold_out


def test_hold_out_is_stratified_disjoint_and_seeded() -> None:
    ds = data.load("digits", "train")
    train_part, held = hold_out(ds, 300, seed=3)
    assert len(held) == 300 and len(train_part) == len(ds) - 300

    def rows(part: data.ArrayDataset) -> list[tuple[int, ...]]:
        return [(*x.flatten().tolist(), int(y)) for x, y in zip(part.images, part.labels, strict=True)]

    seen = rows(held)
    assert set(seen) <= set(rows(ds))
    assert not set(seen) & set(rows(train_part))  # digits has no duplicate images: none on both sides
    # Each class gives its share: within one image of 300 * (its count) / (all).
    share = torch.bincount(ds.labels, minlength=10).double() * 300 / len(ds)
    assert (torch.bincount(held.labels, minlength=10).double() - share).abs().max() < 1
    again = hold_out(ds, 300, seed=3)[1]
    assert torch.equal(again.images, held.images)  # the seed alone decides
    assert not torch.equal(hold_out(ds, 300, seed=4)[1].images, held.images)
    assert held.identity()["split"] == "train, held out"


def test_split_sizes() -> None:
    assert held_out(None, 1 / 6, 60_000) == VAL_SPLIT_CAP == 10_000  # the paper recipe on Fashion-MNIST
    assert held_out(None, 1 / 6, 1_438) == 240
    assert held_out(None, 0.0, 60_000) == 0  # the fast recipe
    assert (
        held_out(0.1, 0.0, 1_438) == 144 and held_out(500, 0.0, 1_438) == 500 and held_out(0, 1 / 6, 99) == 0
    )
    with pytest.raises(CnnlabError, match="leaves nothing to train on"):
        held_out(2_000, 0.0, 1_438)
    with pytest.raises(CnnlabError, match="nothing to validate on"):
        held_out(0.0001, 0.0, 1_438)


@pytest.mark.parametrize("bad", [-1.0, 1.5, float("nan"), float("inf")])
def test_impossible_splits_are_refused_before_anything_is_read(tmp_path: Path, bad: float) -> None:
    with pytest.raises(CnnlabError, match=r"--val-split: .* is not a number of images"):
        train(tiny(tmp_path / "run", val_split=bad))
    assert not (tmp_path / "run").exists()


def test_a_held_out_split_chooses_and_the_test_set_is_reported_apart(tmp_path: Path) -> None:
    result = train(tiny(tmp_path / "run", epochs=3, val_split=300, dropout=0.0))
    run = result.run_dir
    rows = report.read_metrics(run / "metrics.csv")
    assert {"test_loss", "test_top1_err", "test_top5_err"} <= set(rows[0])
    assert any(r["val_top1_err"] != r["test_top1_err"] for r in rows)  # two sets, two numbers
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["val_split"] == 300
    assert doc["data"]["val"]["count"] == 300 and doc["data"]["val"]["split"] == "train, held out"
    assert doc["data"]["train"]["count"] == 1438 - 300 and doc["data"]["test"]["count"] == 359
    assert doc["data"]["validation"].startswith("300 images held out of the training set")
    # best.pt is the epoch of the lowest held-out error, whatever the test set says.
    errs = [float(r["val_top1_err"]) for r in rows]
    best = checkpoint.load(run / "checkpoints" / "best.pt")
    assert best["epoch"] == errs.index(min(errs)) + 1
    summary = (run / "summary.txt").read_text()
    assert "held-out val" in summary and "test top-1 error of best.pt" in summary
    # Resuming holds out the same images: a stopped and resumed run ends where an uninterrupted one does.
    cfg = tiny(tmp_path / "b", epochs=3, val_split=300, dropout=0.0)
    assert train({**cfg, "stop_after": 30}).stopped == "stop_after"
    # The same split asked again, as a count or a fraction, is no change; another one is refused.
    with pytest.raises(CnnlabError, match=r"--val-split 0\.5 differs from the run's 300"):
        train({"out": str(tmp_path / "b"), "resume": True, "val_split": 0.5})
    train({"out": str(tmp_path / "b"), "resume": True, "progress": "none", "val_split": 300 / 1438})
    assert non_timing(run / "metrics.csv") == non_timing(tmp_path / "b" / "metrics.csv")


def test_without_a_split_the_test_set_chooses_nothing(tmp_path: Path) -> None:
    result = train(tiny(tmp_path / "run", epochs=3))  # the fast recipe: no split
    run = result.run_dir
    for r in report.read_metrics(run / "metrics.csv"):  # one set, measured once, written once (as test)
        assert "test_top1_err" in r and not [k for k in r if k.startswith("val_")]
    best, last = (checkpoint.load(run / "checkpoints" / n) for n in ("best.pt", "last.pt"))
    assert best["epoch"] == last["epoch"] == 3  # best.pt is the last epoch, not the test set's pick
    for key, value in last["model"].items():
        assert torch.equal(value, best["model"][key])
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["val_split"] == 0 and doc["data"]["val"] == doc["data"]["test"]
    assert "the test set (no --val-split): nothing is chosen on it" in doc["data"]["validation"]
    assert "best val" not in (run / "summary.txt").read_text()


def test_old_rows_without_test_columns_read_as_nan() -> None:
    text = report.metrics_csv([{"epoch": 1, "lr": 0.1, "val_top1_err": 0.5}])
    assert text.splitlines()[1].split(",")[report.METRIC_COLUMNS.index("test_top1_err")] == "nan"
