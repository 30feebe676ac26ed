"""What a run spends outside its training steps (issue 24): the evaluation set prepared once, report.html
drawn from the run's own last evaluation rather than a second one, and saying what it draws while it does."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import torch
from _reliability import TINY, run_cli

from cnnlab import data
from cnnlab.data import loader as loader_mod
from cnnlab.data.augment import AugmentConfig
from cnnlab.pictures import mistakes


def _eval_loader(n: int = 100) -> data.BatchLoader:
    ds = data.load("digits", "test")
    ds = data.limit(ds, n, 0, shuffle=False)
    stats = data.compute_stats(ds)
    return data.BatchLoader(ds, 32, train=False, aug=AugmentConfig.plain(8), stats=stats, seed=0,
                            device="cpu", views="flip")  # fmt: skip


def test_an_evaluation_set_is_prepared_once_and_gives_the_same_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = _eval_loader()
    first = [(x.clone(), y.clone()) for x, y in loader.epoch(0)]
    calls = []
    original = loader.augmenter.eval
    monkeypatch.setattr(loader.augmenter, "eval", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = list(loader.epoch(0))
    assert calls == []  # the second pass prepared nothing
    assert len(again) == len(first) == len(loader)
    for (x, y), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert [len(y) for _, y in loader.epoch(0, start_step=2)] == [len(y) for _, y in first[2:]]


def test_an_evaluation_set_too_big_to_keep_is_prepared_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_mod, "EVAL_CACHE_BYTES", 1000)
    loader = _eval_loader()
    list(loader.epoch(0))
    calls = []
    original = loader.augmenter.eval
    monkeypatch.setattr(loader.augmenter, "eval", lambda *a, **k: calls.append(1) or original(*a, **k))
    list(loader.epoch(0))
    assert len(calls) == len(loader)


def test_the_runs_page_reuses_its_last_evaluation_and_says_what_it_draws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def again(*args: object, **kwargs: object) -> None:
        raise AssertionError("report.html evaluated the checkpoint a second time")

    monkeypatch.setattr(mistakes, "evaluate_on", again)
    argv = ["train", *[a for a in TINY if a != "--no-report"], "--progress", "lines", "--epochs", "1",
            "--out", str(tmp_path / "run")]  # fmt: skip
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    lines = out.splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith("done:"))
    after = lines[done + 1 :]
    assert after[0].startswith("report: drawing report.html (curves, kernels, confusion matrix")
    assert any(line.startswith("report: nearest neighbours among") for line in after)
    assert after[-1] == f"report: {tmp_path / 'run' / 'report.html'}"
    page = (tmp_path / "run" / "report.html").read_text()
    assert "as the run evaluated it after that epoch" in page
    # The curves are curves.png as the run drew it (with the held-out run's test line), not drawn again.
    first = re.search(r'<img alt="training curves" src="data:image/png;base64,([^"]*)"', page)
    assert first is not None
    assert base64.b64decode(first.group(1)) == (tmp_path / "run" / "curves.png").read_bytes()
