"""What a run shows its user: the progress line, metrics.csv, curves.png, confusion.png and summary.txt.

Plots use matplotlib's Agg backend (no display needed) and are imported lazily: importing matplotlib costs
about a second, which a short training run should not pay up front.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from cnnlab.outfiles import write_bytes, write_text
from cnnlab.texttable import format_seconds, pct

# metrics.csv columns, in order; the training loop fills one row per epoch. `val_*` is a held-out part of
# the training set (--val-split), `test_*` the official test set. A run without a held-out split has no
# `val_*` columns: its validation set is the test set, and one set's numbers are written once, as test.
METRIC_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_top1_err",
    "val_loss",
    "val_top1_err",
    "val_top5_err",
    "test_loss",
    "test_top1_err",
    "test_top5_err",
    "epoch_seconds",
    "images_per_s",
)
# Columns that measure time rather than learning: they differ between two runs of the same config.
TIMING_COLUMNS = ("epoch_seconds", "images_per_s")


def tidy(value: float) -> float:
    """A metric rounded to ten significant digits, far below any difference that matters: float noise such
    as 1.0000000000000002e-06 (0.01 divided by 10 four times) becomes 1e-06. The loop rounds each row once,
    so the checkpoint, metrics.csv and every reader hold the same number."""
    return float(f"{value:.10g}") if math.isfinite(value) else value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        # repr() round-trips exactly, so metrics.csv equals the checkpoint's rows and a resumed run's CSV
        # an uninterrupted one's byte for byte; on a tidy() value it is also the short form.
        return repr(value)
    return str(value)


def metric_columns(held_out: bool = True) -> tuple[str, ...]:
    """The columns of a run's metrics.csv: without a held-out split, no `val_*` (they would repeat test_*)."""
    return METRIC_COLUMNS if held_out else tuple(c for c in METRIC_COLUMNS if not c.startswith("val_"))


def metrics_csv(history: Sequence[Mapping[str, Any]], held_out: bool = True) -> str:
    columns = metric_columns(held_out)
    lines = [",".join(columns)]
    # A row from a run that predates a column gets nan there (readers parse it as a float).
    lines += [",".join(_fmt(row.get(c, math.nan)) for c in columns) for row in history]
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, history: Sequence[Mapping[str, Any]], held_out: bool = True) -> None:
    # Rewritten whole from the history each epoch: a resumed run rebuilds it from the checkpoint, so a
    # row written after the last checkpoint (and lost with the crash) cannot linger or repeat.
    write_text(path, metrics_csv(history, held_out))


def read_metrics(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    # Every label is plain text: a class name like `$x^{$` (a folder name, CIFAR's meta) must not be
    # parsed as TeX, which ended a finished run in a ParseFatalException and no report.
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any, dpi: int = 110, tight: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes (then closed), cropped to what it draws unless not `tight` (a
    figure laid out in whole pixels keeps its size, so its images are not resampled)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    _pyplot().close(fig)
    return buf.getvalue()


def save_figure(fig: Any, path: Path, hint: str | None = None) -> None:
    """Write `fig` as a PNG; `hint` ends the one-line error of a failed write."""
    data = figure_png(fig)
    if hint is None:
        write_bytes(path, data)
    else:
        write_bytes(path, data, hint)


def plot_curves(
    history: Sequence[Mapping[str, Any]], path: Path, title: str = "", held_out: bool = False
) -> bytes:
    """Loss, top-1/top-5 error and learning rate against epoch (the paper reports top-1 and top-5 error);
    with a held-out validation split the test set's top-1 error too (without one, val is the test set).
    Returns the PNG written, which the run's HTML page embeds rather than drawing it again."""
    data = curves_png(history, title, held_out)
    write_bytes(path, data)
    return data


def curves_png(history: Sequence[Mapping[str, Any]], title: str = "", held_out: bool = False) -> bytes:
    """`plot_curves`' picture as PNG bytes (the HTML report embeds it)."""
    return figure_png(curves_figure(history, title, held_out))


def curves_figure(history: Sequence[Mapping[str, Any]], title: str = "", held_out: bool = False) -> Any:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in history]
    # Without a held-out split the validation set is the test set: its lines are drawn once, named test
    # (runs from before the test_* columns have only val_*, which then is the test set).
    first = history[0] if history else {}
    held_out = held_out and "val_top1_err" in first
    watched = "val" if held_out or "test_top1_err" not in first else "test"
    shown = "val" if held_out else "test"
    # Constrained layout leaves each panel room for its own tick and axis labels: with fixed spacing a
    # log axis' labels (1e-03) ran into the y-label, and the figure title into the panel titles.
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    ax = axes[0]
    ax.plot(epochs, [float(r["train_loss"]) for r in history], "o-", label="train")
    ax.plot(epochs, [float(r[f"{watched}_loss"]) for r in history], "o-", label=shown)
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    ax = axes[1]
    ax.plot(epochs, [100 * float(r["train_top1_err"]) for r in history], "o-", label="train top-1")
    ax.plot(epochs, [100 * float(r[f"{watched}_top1_err"]) for r in history], "o-", label=f"{shown} top-1")
    ax.plot(epochs, [100 * float(r[f"{watched}_top5_err"]) for r in history], "o--", label=f"{shown} top-5")
    if held_out and "test_top1_err" in first:
        ax.plot(epochs, [100 * float(r["test_top1_err"]) for r in history], "s-", label="test top-1")
    ax.set(xlabel="epoch", ylabel="error (%)", title="error")
    ax.legend()
    ax = axes[2]
    ax.plot(epochs, [float(r["lr"]) for r in history], "o-")
    ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate (at epoch end)")
    lrs = [float(r["lr"]) for r in history]
    # The paper's schedule divides by 10 up to three times: a log axis shows each step; a schedule that
    # ends at zero (one-cycle) stays linear.
    if min(lrs) > 0 and max(lrs) / min(lrs) > 50:
        ax.set_yscale("log")
    for a in axes:
        a.grid(alpha=0.3)
        if len(set(epochs)) <= 12:  # epochs are whole numbers: tick each one, or whole numbers only
            a.set_xticks(sorted(set(epochs)))
        else:
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    return fig


def plot_confusion(
    matrix: Sequence[Sequence[int]],
    classes: Sequence[str],
    path: Path,
    title: str = "",
    hint: str | None = None,
) -> None:
    """Row-normalised confusion matrix (true class down, predicted across), counts in the cells; `hint`
    ends the one-line error of a failed write."""
    png = confusion_png(matrix, classes, title)
    if hint is None:
        write_bytes(path, png)
    else:
        write_bytes(path, png, hint)


def confusion_png(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> bytes:
    """`plot_confusion`'s picture as PNG bytes."""
    plt = _pyplot()
    k = len(classes)
    rows = [[float(v) for v in row] for row in matrix]
    norm = [[v / max(sum(row), 1.0) for v in row] for row in rows]
    side = min(2.0 + 0.55 * k, 24.0)
    fig, ax = plt.subplots(figsize=(side, side))
    shown = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class's images")
    if k <= 30:
        ax.set_xticks(range(k), labels=list(classes), rotation=60, ha="right")
        ax.set_yticks(range(k), labels=list(classes))
        for i in range(k):
            for j in range(k):
                if rows[i][j]:
                    color = "white" if norm[i][j] > 0.5 else "black"
                    ax.text(j, i, f"{int(rows[i][j])}", ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    return figure_png(fig)


def epoch_line(row: Mapping[str, Any], epochs: int, held_out: bool = False, eta: float | None = None) -> str:
    """One epoch's numbers; `held_out`: val is a held-out split and the test set is shown apart (without
    one the validation set is the test set, named test). Top-1 as error and as accuracy."""
    seen = "val" if held_out else "test"
    err = row[f"{seen}_top1_err"]
    test = f"test top-1 err {pct(row['test_top1_err'])}  " if held_out else ""
    return (
        f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  "
        f"train loss {row['train_loss']:.4f} err {pct(row['train_top1_err'])}  "
        f"{seen} loss {row[f'{seen}_loss']:.4f} top-1 err {pct(err)} (acc {pct(1 - err)}) "
        f"top-5 err {pct(row[f'{seen}_top5_err'])}  "
        f"{test}{format_seconds(row['epoch_seconds'])}  {row['images_per_s']:.0f} img/s"
        + (f"  run eta {format_seconds(eta)}" if eta is not None and row["epoch"] < epochs else "")
    )


class Progress:
    """Per-epoch progress: a redrawn bar on a terminal, a few plain lines otherwise.

    `update` is cheap to call every step; it only formats (and reads the running loss, a device sync)
    when it is about to draw, which `due` tells the loop beforehand.
    """

    def __init__(self, mode: str = "auto", stream: TextIO | None = None, bar_interval: float = 0.2) -> None:
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.gone = False  # the reader went away (a closed pipe): nothing more is written
        self.bar_interval = bar_interval
        self.total = 1
        self.label = ""
        self._next_draw = 0.0
        self._next_line_step = 0

    def start(self, label: str, total: int, start_step: int = 0) -> None:
        self.label, self.total = label, max(total, 1)
        self._t0 = time.perf_counter()
        self._start_step = start_step
        self._next_draw = 0.0
        # Plain-line mode prints at quarters of the epoch.
        self._line_every = max(self.total // 4, 1)
        self._next_line_step = start_step + self._line_every

    def due(self, step: int) -> bool:
        """Whether `update(step + 1, ...)` will draw (so the loop knows when to read its sums)."""
        done = step + 1
        if self.mode == "bar":
            return done == self.total or time.perf_counter() >= self._next_draw
        if self.mode == "lines":
            return done >= self._next_line_step and done < self.total
        return False

    def update(self, done: int, images: int, loss: float, acc: float, run_eta: float | None = None) -> None:
        """Draw the epoch's progress; `run_eta` is the whole run's remaining time, when it is known."""
        elapsed = time.perf_counter() - self._t0
        rate = images / elapsed if elapsed > 0 else 0.0
        steps = done - self._start_step
        eta = elapsed / steps * (self.total - done) if steps > 0 else 0.0
        stats = f"{rate:6.0f} img/s  loss {loss:.4f}  acc {100 * acc:5.2f}%"
        whole = f"  run eta {format_seconds(run_eta)}" if run_eta is not None else ""
        if self.mode == "bar":
            width = 24
            fill = int(width * done / self.total)
            bar = "#" * fill + "." * (width - fill)
            text = f"\r{self.label} [{bar}] {done}/{self.total}  {stats}  eta {format_seconds(eta)}{whole}"
            self._write(text + " " * 4)
            self._next_draw = time.perf_counter() + self.bar_interval
        elif self.mode == "lines":
            self._write(f"{self.label} step {done}/{self.total}  {stats}{whole}\n")
            self._next_line_step = done + self._line_every

    def end(self) -> None:
        if self.mode == "bar":
            self._write("\r\033[K")

    def print(self, text: str) -> None:
        """A line between progress updates (a redrawn bar is cleared first); nothing in mode none."""
        if self.mode == "bar":
            self._write("\r\033[K")
        if self.mode != "none":
            self._write(text + "\n")

    def always(self, text: str) -> None:
        """A line printed in every mode, --progress none too: the run's outcome (`done: ...`)."""
        if not self.gone:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        if not write_or_go_quiet(self.stream, text):
            self.mode, self.gone = "none", True


def write_or_go_quiet(stream: TextIO, text: str) -> bool:
    """Write and flush; False when the reader has gone (`cnnlab train ... | head`). Progress output must
    never be what stops a run: the stream is pointed at /dev/null (so no later write or the interpreter's
    last flush fails either) and the caller prints no more."""
    try:
        stream.write(text)
        stream.flush()
        return True
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        return False


def summary_text(lines: Mapping[str, Any]) -> str:
    width = max(len(k) for k in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines.items()) + "\n"
