"""`cnnlab report`: one self-contained HTML page for a run, checked as text and in a real browser."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import CHROMIUM, needs_chromium
from PIL import Image
from test_train import tiny  # tests/ is on sys.path (no __init__.py)

from cnnlab import report
from cnnlab.cli import main
from cnnlab.device import eval_amp, precision_words
from cnnlab.errors import CnnlabError
from cnnlab.pictures.runpage import split_note, write_report
from cnnlab.training import train

SECTIONS = ("numbers", "curves", "config", "filters", "confusion", "mistakes", "neighbors", "gradcam")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runpage")
    # fp32 (no bf16 autocast): the page re-evaluates in fp32 and must match the run to the image.
    train(tiny(root / "run", epochs=2, dropout=0.0, amp=False))
    return root / "run"


@pytest.fixture(scope="module")
def page(run: Path) -> Path:
    out = run / "report.html"
    assert main(["report", str(run), "--device", "cpu", "--mistakes", "6", "--queries", "3",
                 "--bank-size", "300", "--gradcams", "4"]) == 0  # fmt: skip
    return out


def images_of(text: str) -> list[bytes]:
    srcs = re.findall(r'<img alt="[^"]*" src="([^"]*)"', text)
    assert len(srcs) == text.count("<img")
    out = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    return out


def test_page_holds_every_section_with_embedded_pictures(page: Path, run: Path) -> None:
    text = page.read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in text, anchor
    pictures = images_of(text)
    assert len(pictures) == 6  # curves, kernels, confusion, mistakes, neighbours, Grad-CAM
    for raw in pictures:
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = Image.open(io.BytesIO(raw)).size
        assert w > 200 and h > 100
    # Self-contained: nothing is fetched from anywhere (no links out, no scripts, no external sheets).
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    assert "<script" not in text and "<link" not in text
    # The numbers are the run's, with the split they come from.
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()]
    last = dict(zip(rows[0], rows[-1], strict=True))
    assert f"{100 * float(last['test_top1_err']):.2f}%" in text
    assert "the digits test split (359 images)" in text
    assert "the test set (no --val-split)" in text  # config.json's account of what val_* measured
    assert "per-class" in text.lower() and "most often mistaken for" in text


def test_page_evaluation_matches_the_runs_best_epoch(page: Path, run: Path) -> None:
    """The fresh evaluation of best.pt on the test set gives the test error metrics.csv recorded for the
    epoch best.pt holds."""
    from cnnlab import checkpoint

    text = page.read_text()
    epoch = checkpoint.load(run / "checkpoints" / "best.pt")["epoch"]
    rows = {int(r["epoch"]): r for r in report.read_metrics(run / "metrics.csv")}
    found = re.search(r"evaluated again on the .*?top-1 error ([0-9.]+)%", text)
    assert found is not None
    assert float(found.group(1)) == pytest.approx(100 * float(rows[epoch]["test_top1_err"]), abs=0.006)


def test_split_note_reads_the_config() -> None:
    held_out = {
        "config": {"dataset": "x", "limit_val": 50},
        "data": {
            "test": {"name": "x", "split": "test", "count": 50},
            "validation": "100 images held out of the training set (--val-split, seed 0, stratified)",
        },
    }
    label, sentence = split_note(held_out)
    assert label == "x test split" and "100 images held out" in sentence and "(50 images)" in sentence
    assert "optimistic" not in sentence
    # A run from before test_* columns: it validated on the test set, and the page says what that means.
    old = {"config": {"dataset": "x"}, "data": {"val": {"name": "x", "split": "test", "count": 50}}}
    label, sentence = split_note(old)
    assert label == "x test split" and "optimistic" in sentence


def test_report_errors_and_a_run_without_checkpoints(run: Path, tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="not a run folder"):
        write_report(tmp_path, tmp_path / "r.html")
    with pytest.raises(CnnlabError, match=r"\.html"):
        write_report(run, tmp_path / "r.png")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.json", bare / "config.json")
    shutil.copy(run / "metrics.csv", bare / "metrics.csv")
    out = write_report(bare, device="cpu")
    text = out.read_text()
    assert out == bare / "report.html" and "No checkpoint" in text and "not finished" in text
    assert len(images_of(text)) == 1  # the curves
    json.loads((bare / "config.json").read_text())  # untouched


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--disable-extensions", "--virtual-time-budget=10000", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@needs_chromium
def test_page_renders_in_a_browser(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = chromium(f"--screenshot={shot}", "--window-size=1280,2400", page.resolve().as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20 and (pixels < 100).mean() > 0.01  # text and pictures, not a blank page
    # Every picture decodes in the browser: a copy of the page records, once loaded, how many <img>
    # elements it has and how many finished with a real size, in the DOM that --dump-dom prints.
    probe = tmp_path / "probe.html"
    script = (
        "<script>window.addEventListener('load', () => { const all = Array.from(document.images); "
        "document.body.setAttribute('data-images', all.length + '/' + "
        "all.filter(i => i.complete && i.naturalWidth > 0).length); });</script></body>"
    )
    probe.write_text(page.read_text().replace("</body>", script))
    dom = chromium("--dump-dom", probe.resolve().as_uri()).stdout
    found = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert found is not None, dom[-500:]
    assert found.group(1) == found.group(2) == "6"


def test_train_writes_the_page_at_the_end_unless_asked_not_to(tmp_path: Path) -> None:
    # The command draws the page (pictures sit above training); train() from Python leaves it out.
    args = ["train", "--model", "alexnet_small", "--dataset", "digits", "--recipe", "fast", "--epochs", "1",
            "--batch-size", "64", "--input-size", "8", "--model-opt", "width=0.25", "--dropout", "0",
            "--progress", "none"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "with")]) == 0
    page = tmp_path / "with" / "report.html"
    assert page.is_file() and len(images_of(page.read_text())) >= 4
    assert main([*args, "--out", str(tmp_path / "without"), "--no-report"]) == 0
    assert (tmp_path / "without" / "summary.txt").is_file()
    assert not (tmp_path / "without" / "report.html").exists()
    quiet = train(tiny(tmp_path / "python", epochs=1, dropout=0.0, report=True))
    assert not (quiet.run_dir / "report.html").exists()


def test_one_checkpoint_one_number_in_metrics_report_and_eval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run trained under bf16 autocast: metrics.csv's last row, report.html and `cnnlab eval` give the same
    test errors (exactly) and loss (as printed), and all say the same precision: bf16 autocast where the CPU
    runs it fast (`device.eval_amp`), else fp32. (Once the training evaluated under autocast, eval and the
    report in fp32: the demo said 7.10% and 7.12%.)
    Without --val-split nothing is written twice: no val_* columns, no val rows, the test rows only."""
    run = tmp_path / "run"
    train(tiny(run, epochs=2, dropout=0.0, amp=True, amp_dtype="bf16", val_views="flip"))
    write_report(run, device="cpu")  # what the train command draws after train()
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert not [c for c in header.split(",") if c.startswith("val_")], header
    last = report.read_metrics(run / "metrics.csv")[-1]
    capsys.readouterr()
    assert main(["eval", str(run / "checkpoints" / "best.pt"), "--views", "flip", "--json",
                 "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert report.tidy(result["top1_err"]) == float(last["test_top1_err"])  # metrics hold 10 digits
    assert report.tidy(result["top5_err"]) == float(last["test_top5_err"])
    # The loss is a float sum over differently sized batches (64 here, 256 in eval): equal as printed.
    assert f"{result['loss']:.4f}" == f"{float(last['test_loss']):.4f}"
    assert result["loss"] == pytest.approx(float(last["test_loss"]), rel=1e-7)
    text = (run / "report.html").read_text()
    found = re.search(r"evaluated again on the .*?top-1 error ([0-9.]+)%.*?loss ([0-9]+\.[0-9]+)", text)
    assert found is not None
    assert found.group(1) == f"{100 * result['top1_err']:.2f}" and found.group(2) == f"{result['loss']:.4f}"
    numbers = text[text.index('<section id="numbers">') : text.index('<section id="curves">')]
    assert "val top-1" not in numbers and "val loss" not in numbers
    assert f"{100 * float(last['test_top1_err']):.2f}%" in numbers
    precision = precision_words(eval_amp("bf16", "cpu"))
    assert result["precision"] == precision
    assert f"evaluated in            {precision} (as cnnlab eval" in (run / "summary.txt").read_text()
    assert f"flip views, {precision}): top-1 error" in text


def test_settings_come_after_the_pictures_folded_and_small_kernels_have_a_caption(page: Path) -> None:
    text = page.read_text()
    anchors = re.findall(r'<section id="([a-z]+)">', text)
    assert anchors[-1] == "config" and anchors.index("filters") < anchors.index("config")
    settings = text[text.index('<section id="config">') :]
    assert settings.index("<details><summary>the ") < settings.index("<table>")  # folded
    filters = text[text.index('<section id="filters">') : text.index('<section id="confusion">')]
    assert "What these can show" in filters and "What they cannot show" in filters


def test_the_reports_curves_keep_the_test_line_of_a_held_out_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """curves.png of a run with --val-split draws val and test; the report's redrawn curves dropped test."""
    run = tmp_path / "run"
    train(tiny(run, epochs=1, val_split=300, dropout=0.0))
    drawn: list[bool] = []
    real = report.curves_png
    monkeypatch.setattr(
        report, "curves_png", lambda h, t="", held_out=False: drawn.append(held_out) or real(h, t, held_out)
    )
    write_report(run, device="cpu", mistakes=0, queries=0, gradcams=0)
    assert drawn == [True]
    labels = [t.get_text() for t in report.curves_figure(report.read_metrics(run / "metrics.csv"), "", True)
              .axes[1].get_legend().get_texts()]  # fmt: skip
    assert "test top-1" in labels and "val top-1" in labels
