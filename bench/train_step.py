"""Training-step throughput: one SGD step (forward, backward, update) of cnnlab's nets against torchvision's.

Rows (images/s of the median step, ours against the peer in the same run, repetitions interleaved):
- alexnet_torchvision against torchvision.models.alexnet, the same weights, batch and input, the same
  optimiser: the cost of cnnlab's model code (input checks, module layout) alone;
- the same pair with cnnlab's speed settings (`TrainConfig.channels_last`, `.compile`, the trainer's
  foreach SGD from `recipes.make_optimizer`) against the unchanged peer;
- alexnet (the paper's net) at 227 against torchvision's alexnet at 227: the nets differ (96-256-384-384-
  256 convs with LRN against 64-192-384-256-256 without), so the ratio is the price of the paper's net;
- vgg11 against torchvision.models.vgg11, the same weights.

    python -m bench.train_step [--quick] [--write]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from bench import common
from cnnlab import models, recipes

# One place for the optimiser of the eager rows: the paper's SGD, identical for both sides.
SGD: dict[str, Any] = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


@dataclass
class Side:
    """One side of a comparison: a model, its optimiser and how its input is laid out."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    channels_last: bool = False

    def step_fn(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model, opt = self.model, self.optimizer

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        return step


def plain_side(model: nn.Module) -> Side:
    return Side(model, torch.optim.SGD(model.parameters(), **SGD))


def cnnlab_side(model: nn.Module, *, channels_last: bool, compile: bool) -> Side:
    """The model as `cnnlab train` runs it with these settings (see cnnlab/train.py's _Loop)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = recipes.TrainConfig(
        model="",
        dataset="",
        lr=SGD["lr"],
        momentum=SGD["momentum"],
        weight_decay=SGD["weight_decay"],
        nesterov=False,
    )
    opt = recipes.make_optimizer(model, cfg, decay_norm_and_bias=True)
    net = torch.compile(model) if compile else model
    return Side(net, opt, channels_last)  # type: ignore[arg-type]


@dataclass
class Row:
    label: str
    ours: str
    peer: str
    size: int
    batch: int
    note: str = ""
    ours_ips: float = 0.0
    peer_ips: float = 0.0
    ratio: float = 0.0
    pair_spread: str = ""
    warmup_s: float = 0.0


def measure(row: Row, ours: Side, peer: Side, reps: int, in_channels: int = 3, classes: int = 1000) -> Row:
    x = torch.randn(row.batch, in_channels, row.size, row.size)
    y = torch.randint(0, classes, (row.batch,))
    t0 = time.perf_counter()
    ours.step_fn(x, y)()  # compilation, if any, happens here and is reported apart
    row.warmup_s = time.perf_counter() - t0
    t = common.interleave({"ours": ours.step_fn(x, y), "peer": peer.step_fn(x, y)}, reps, warmup=1)
    row.ours_ips, row.peer_ips = t.rate("ours", row.batch), t.rate("peer", row.batch)
    row.ratio = row.ours_ips / row.peer_ips
    row.pair_spread = common.spread(t.pair_ratios("ours", "peer"))
    print(
        f"  {row.label}: ours {row.ours_ips:.2f} img/s, peer {row.peer_ips:.2f} img/s, "
        f"ratio {row.ratio:.2f} (pairs {row.pair_spread})",
        flush=True,
    )
    return row


def same_weights(ours: nn.Module, peer: nn.Module) -> nn.Module:
    """Copy the peer's weights into ours (the torchvision-compatible nets share key names)."""
    ours.load_state_dict(peer.state_dict())
    return ours


def run(args: argparse.Namespace) -> list[Row]:
    reps = 1 if args.quick else args.reps
    b_alex, b_vgg = (1, 1) if args.quick else (args.batch, args.vgg_batch)
    rows: list[Row] = []

    torch.manual_seed(0)
    tv = torchvision.models.alexnet()
    ours = same_weights(models.create("alexnet_torchvision"), tv)
    row = Row(
        "alexnet_torchvision, eager fp32",
        "alexnet_torchvision",
        "torchvision alexnet",
        224,
        b_alex,
        "same weights, batch, input, optimiser",
    )
    rows.append(measure(row, plain_side(ours), plain_side(tv), reps))

    settings = [("channels-last", True, False)]
    if args.compile:
        settings += [("torch.compile", False, True), ("torch.compile + channels-last", True, True)]
    for name, cl, comp in settings:
        torch.manual_seed(0)
        tv = torchvision.models.alexnet()
        ours = same_weights(models.create("alexnet_torchvision"), tv)
        row = Row(
            f"alexnet_torchvision, {name}",
            "alexnet_torchvision",
            "torchvision alexnet (eager)",
            224,
            b_alex,
            f"cnnlab train --{name.replace(' + ', ' --').replace('torch.', '')}",
        )
        rows.append(measure(row, cnnlab_side(ours, channels_last=cl, compile=comp), plain_side(tv), reps))
        del ours, tv
        torch._dynamo.reset()

    torch.manual_seed(0)
    row = Row(
        "alexnet (paper's net) at 227",
        "alexnet",
        "torchvision alexnet at 227",
        227,
        b_alex,
        "different nets: 96-256-384-384-256 + LRN vs 64-192-384-256-256",
    )
    rows.append(
        measure(row, plain_side(models.create("alexnet")), plain_side(torchvision.models.alexnet()), reps)
    )

    if "vgg11" in models.names():
        torch.manual_seed(0)
        tv = torchvision.models.vgg11()
        ours = same_weights(models.create("vgg11"), tv)
        row = Row("vgg11, eager fp32", "vgg11", "torchvision vgg11", 224, b_vgg, "same weights")
        rows.append(measure(row, plain_side(ours), plain_side(tv), reps))
    else:
        rows.append(
            Row("vgg11", "vgg11", "torchvision vgg11", 224, b_vgg, "not measured: vgg11 not registered")
        )
    return rows


def markdown(rows: list[Row], reps: int) -> str:
    body = common.table(
        [
            "case",
            "batch x size",
            "cnnlab img/s",
            "peer img/s",
            "ratio",
            "pair ratios",
            "first step s",
            "note",
        ],
        [
            [
                r.label,
                f"{r.batch} x {r.size}",
                f"{r.ours_ips:.2f}",
                f"{r.peer_ips:.2f}",
                f"**{r.ratio:.2f}**",
                r.pair_spread,
                f"{r.warmup_s:.1f}",
                r.note,
            ]
            if r.ours_ips
            else [r.label, f"{r.batch} x {r.size}", "-", "-", "-", "-", "-", r.note]
            for r in rows
        ],
    )
    return (
        f"{body}\n\nratio = cnnlab images/s / peer images/s (> 1: cnnlab faster), from the median of {reps} "
        "steps per side, peer and cnnlab steps interleaved; 'pair ratios' is the range of the ratio over "
        "adjacent pairs. 'first step s' is cnnlab's first step (torch.compile's compilation), not in the "
        "rate. SGD lr 0.01, momentum 0.9, weight decay 5e-4, cross-entropy, 1000 classes, random input.\n"
    )


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="timed steps per side (default 5)")
    p.add_argument("--batch", type=int, default=32, help="AlexNet batch (default 32)")
    p.add_argument("--vgg-batch", type=int, default=8, help="VGG-11 batch (default 8)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the torch.compile rows (default: yes, except with --quick)",
    )
    args = p.parse_args()
    if args.compile is None:
        args.compile = not args.quick
    load = common.setup(args)
    rows = run(args)
    text = common.section(markdown(rows, 1 if args.quick else args.reps), load)
    print(text)
    if args.write:
        common.update_benchmarks_md("train_step", text)


if __name__ == "__main__":
    main()
