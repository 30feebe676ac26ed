"""Models side by side: parameters, FLOPs, training memory and measured speed.

The counts come from the meta device (no arithmetic, so VGG-19 costs nothing): FLOPs from the layer table,
and the training memory as autograd sees it: a training-mode forward with `saved_tensors_hooks` records
every tensor kept for the backward pass, each storage counted once and the weights left out. Speed is a
short timed loop with warm-up on a real model: eval forward, and a full SGD step (forward, loss, backward,
update). Ratios against the first model come with every run, since absolute times depend on the machine.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import limits, models, outfiles
from cnnlab.device import resolve_device
from cnnlab.summary import (
    build,
    check_name,
    default_input_size,
    fmt_bytes,
    fmt_count,
    layer_table,
    model_device,
    render,
    run_named,
    totals,
)
from cnnlab.texttable import format_seconds


@dataclass
class Counts:
    params: int
    flops: int  # per image, a multiply-add counts 2
    output_bytes: int  # every layer output that allocates, at the batch (the summary's activation total)
    saved_bytes: int  # tensors autograd keeps for the backward pass at the batch, weights excluded


@dataclass
class CompareRow:
    name: str
    input_size: tuple[int, int, int]
    batch_size: int
    params: int
    flops: int
    output_bytes: int
    saved_bytes: int
    forward_ips: float | None = None  # images per second, eval forward
    train_ips: float | None = None  # images per second, SGD step
    device: str = ""


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    """One key per memory block: its address, or (meta tensors have none) the identity of the base tensor."""
    if t.device.type == "meta":
        return ("meta", id(t._base if t._base is not None else t))
    return (str(t.device), t.untyped_storage().data_ptr())


def _storage_bytes(t: torch.Tensor) -> int:
    if t.device.type == "meta":
        base = t._base if t._base is not None else t
        return base.numel() * base.element_size()
    return t.untyped_storage().nbytes()


def saved_bytes(model: nn.Module, input_size: tuple[int, int, int], batch_size: int) -> int:
    """Bytes autograd keeps for backward in one training-mode forward (input included, weights not)."""
    weights = {_storage_key(p) for p in model.parameters()}
    seen: dict[tuple[str, int], int] = {}
    keep: list[torch.Tensor] = []  # holds every saved tensor so no id() is reused mid-count

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in weights:
            seen.setdefault(key, _storage_bytes(t))
        keep.append(t)
        return t

    was_training = model.training
    device = model_device(model)
    limits.check_input_batch(batch_size, input_size, device)
    x = torch.zeros(batch_size, *input_size, device=device)
    try:
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
    finally:
        model.train(was_training)
    return sum(seen.values())


def count(model: nn.Module, input_size: tuple[int, int, int], batch_size: int) -> Counts:
    """Parameters, FLOPs per image and the two memory figures of `model` (any device; meta is fastest)."""
    t = totals(layer_table(model, input_size, batch_size))
    return Counts(t.params, t.flops, t.activation_bytes, saved_bytes(model, input_size, batch_size))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], Any], batch_size: int, device: torch.device, warmup: int, steps: int) -> float:
    """Images per second over `steps` timed calls after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch_size * steps / (time.perf_counter() - t0)


def speed(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batch_size: int,
    num_classes: int,
    *,
    warmup: int = 1,
    steps: int = 3,
) -> tuple[float, float]:
    """(forward images/s, training images/s) of a real model on its own device."""
    device = model_device(model)
    x = torch.randn(batch_size, *input_size, device=device)
    # Labels in the range the model really outputs: a user's network has its own class count.
    model.eval()
    with torch.no_grad():
        num_classes = int(models.split_outputs(model(x[:1]))[0].shape[1])
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        logits, aux = models.split_outputs(model(x))
        loss = loss_fn(logits, y)
        for a in aux:  # GoogLeNet's auxiliary heads, weighted as in its training (section 5)
            loss = loss + models.AUX_LOSS_WEIGHT * loss_fn(a, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.eval()
    fwd = _rate(forward, batch_size, device, warmup, steps)
    model.train()
    train = _rate(train_step, batch_size, device, warmup, steps)
    model.eval()
    return fwd, train


def compare(
    names: list[str],
    input_size: tuple[int, int, int] | None = None,
    batch_size: int = 32,
    num_classes: int = 1000,
    device: str | None = None,
    *,
    timed: bool = True,
    warmup: int = 1,
    steps: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[CompareRow]:
    """One row per named model; each model at `input_size` or, when None, at its own default input."""
    for name in names:
        check_name(name)  # every name checked before minutes of timing start

    dev = resolve_device(device or "auto")
    rows = []
    for name in names:  # counting is quick (the meta device); every model first, so timing can be estimated
        size = input_size or default_input_size(name)
        c = run_named(
            name, num_classes, size[0], functools.partial(count, input_size=size, batch_size=batch_size)
        )
        rows.append(CompareRow(name, size, batch_size, c.params, c.flops, c.output_bytes, c.saved_bytes))
    if not timed:
        return rows
    say = progress or (lambda _text: None)
    calls = warmup + steps
    say(f"timing {len(rows)} model{'s' * (len(rows) != 1)} on {dev} at batch {batch_size}: {calls} forward "
        f"passes and {calls} training steps each; an estimate of the rest follows the first")  # fmt: skip
    # A model's timing costs about its FLOPs per image (forward and training step alike scale with them):
    # the seconds per FLOP measured so far estimate the models still to come.
    spent, flops_done = 0.0, 0
    for i, row in enumerate(rows, start=1):
        name, size = row.name, row.input_size
        # A training step keeps the saved activations, plus weights, gradients and momentum.
        limits.check_fits(
            row.saved_bytes + 3 * 4 * row.params,
            f"timing {name} at batch {batch_size} ({'x'.join(map(str, size))} inputs)",
            "lower --batch-size or --input-size, or pass --no-timing",
            dev,
        )
        say(f"[{i}/{len(rows)}] timing {name} ...")
        t0 = time.perf_counter()
        model = build(name, num_classes, size[0], meta=False).to(dev)
        row.forward_ips, row.train_ips = speed(
            model, size, batch_size, num_classes, warmup=warmup, steps=steps
        )
        row.device = str(dev)
        del model
        took = time.perf_counter() - t0
        spent, flops_done = spent + took, flops_done + max(row.flops, 1)
        rest = rows[i:]
        left = spent / flops_done * sum(max(r.flops, 1) for r in rest)
        more = f"; about {format_seconds(left)} more for the other {len(rest)}" if rest else ""
        say(f"[{i}/{len(rows)}] {name} timed in {format_seconds(took)}{more}")
    return rows


# ---------------------------------------------------------------------------------------------------------
# Output


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3g}x" if a and b else "-"


def format_rows(rows: list[CompareRow]) -> str:
    """The table, then each model against the first one (the peer measured in the same run)."""
    b = rows[0].batch_size
    header = [
        "model",
        "input",
        "params",
        "FLOPs/img",
        f"outputs B={b}",
        f"saved for bwd B={b}",
        "fwd img/s",
        "train img/s",
    ]
    body = [
        [
            r.name,
            "x".join(map(str, r.input_size)),
            fmt_count(r.params),
            fmt_count(r.flops),
            fmt_bytes(r.output_bytes),
            fmt_bytes(r.saved_bytes),
            f"{r.forward_ips:.1f}" if r.forward_ips else "-",
            f"{r.train_ips:.1f}" if r.train_ips else "-",
        ]
        for r in rows
    ]
    lines = [render(header, body, right=set(range(2, 8)))]
    ref = rows[0]
    for r in rows[1:]:
        parts = [
            f"{_ratio(r.params, ref.params)} params",
            f"{_ratio(r.flops, ref.flops)} FLOPs",
            f"{_ratio(r.saved_bytes, ref.saved_bytes)} training activation memory",
        ]
        if r.train_ips and ref.train_ips:
            parts.append(
                f"trains {_ratio(ref.train_ips, r.train_ips)} slower"
                if r.train_ips < ref.train_ips
                else f"trains {_ratio(r.train_ips, ref.train_ips)} faster"
            )
        lines.append(f"{r.name} vs {ref.name}: " + ", ".join(parts))
    if rows[0].device:
        threads = torch.get_num_threads()
        lines.append(
            f"speed: {rows[0].device}, {threads} threads; on a shared machine the numbers are indicative"
        )
    lines.append(
        "FLOPs: a multiply-add counts 2. outputs: every layer output (the summary's total). saved for bwd: "
        "what autograd keeps for the backward pass (input, masks and pool indices included, weights not)"
    )
    return "\n".join(lines)


def bar_chart(rows: list[CompareRow], path: str | Path) -> Path:
    """One bar panel per measure, models side by side, written to `path` (an existing file is refused)."""
    return outfiles.write_file(path, bar_chart_png(rows), "--out")


def bar_chart_png(rows: list[CompareRow]) -> bytes:
    """`bar_chart`'s picture as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # model names are plain text (report._pyplot)
    import matplotlib.pyplot as plt

    panels: list[tuple[str, list[float]]] = [
        ("parameters (M)", [r.params / 1e6 for r in rows]),
        ("GFLOPs per image", [r.flops / 1e9 for r in rows]),
        (f"training activations (GiB, batch {rows[0].batch_size})", [r.saved_bytes / 2**30 for r in rows]),
    ]
    if all(r.train_ips for r in rows):
        panels += [
            ("forward images/s", [r.forward_ips or 0.0 for r in rows]),
            ("training images/s", [r.train_ips or 0.0 for r in rows]),
        ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    names = [r.name for r in rows]
    for ax, (title, values) in zip(axes[0], panels, strict=True):
        bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(rows))])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
