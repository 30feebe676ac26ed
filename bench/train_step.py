"""Training-step throughput: one SGD step (forward, backward, update) of cnnlab's nets against torchvision's.

Rows (images/s of the median step, ours against the peer in the same run, repetitions interleaved):
- alexnet_torchvision against torchvision.models.alexnet, the same weights, batch and input, the same
  optimiser: the cost of cnnlab's model code (input checks, module layout) alone;
- the same pair with cnnlab's speed settings (`TrainConfig.channels_last`, `.compile`, the trainer's
  foreach SGD from `cnnlab.training.recipes.make_optimizer`) against the unchanged peer;
- alexnet_fast (the fast recipe's 28 px net) with those settings and the fast recipe's bf16 (on CPUs with
  bf16 instructions) against the same net run plainly (eager fp32, NCHW): there is no torchvision peer;
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
from cnnlab import models
from cnnlab.device import amp_dtype, autocast, fast_amp_dtype
from cnnlab.training import recipes

# One place for the optimiser of the eager rows: the paper's SGD, identical for both sides.
SGD: dict[str, Any] = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


@dataclass
class Side:
    """One side of a comparison: a model, its optimiser and how its input is laid out."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    channels_last: bool = False
    amp: str = "none"  # the trainer's autocast type (TrainConfig.amp_dtype, resolved)

    def step_fn(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model, opt, dtype = self.model, self.optimizer, amp_dtype(self.amp)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast(dtype, "cpu"):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        return step


def plain_side(model: nn.Module) -> Side:
    return Side(model, torch.optim.SGD(model.parameters(), **SGD))


def cnnlab_side(model: nn.Module, *, channels_last: bool, compile: bool, amp: str = "none") -> Side:
    """The model as `cnnlab train` runs it with these settings (see cnnlab/training/loop.py)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    asked = dict(
        model="bench", dataset="bench", recipe="paper", lr=SGD["lr"], momentum=SGD["momentum"],
        weight_decay=SGD["weight_decay"], nesterov=False,
    )  # fmt: skip
    facts = recipes.Facts(data_side=0, train_images=0, model_input_size=227, model_switches={})
    cfg = recipes.resolve(asked, facts, device_type="cpu")
    opt = recipes.make_optimizer(model, cfg)  # the paper recipe decays every weight
    net = torch.compile(model) if compile else model
    return Side(net, opt, channels_last, amp)  # type: ignore[arg-type]


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


def _pair(name: str, peer: Callable[[], nn.Module] | None, **opts: Any) -> tuple[nn.Module, nn.Module]:
    """cnnlab's `name` and its peer with the same weights; no peer given: the same net, a second copy."""
    torch.manual_seed(0)
    ours = models.create(name, **opts)
    twin = peer() if peer is not None else models.create(name, **opts)
    return same_weights(ours, twin), twin


def run(args: argparse.Namespace) -> list[Row]:
    reps = 1 if args.quick else args.reps
    b_alex, b_vgg, b_small = (1, 1, 8) if args.quick else (args.batch, args.vgg_batch, 256)
    rows: list[Row] = []

    def settings_rows(
        name: str,
        peer_name: str,
        size: int,
        batch: int,
        settings: list[tuple[str, bool, bool, str]],
        peer: Callable[[], nn.Module] | None,
        classes: int = 1000,
        **opts: Any,
    ) -> None:
        for label, cl, comp, amp in settings:
            ours, twin = _pair(name, peer, num_classes=classes, **opts)
            on = (("--channels-last", cl), ("--compile", comp), ("--amp", amp != "none"))
            flags = " ".join(f for f, yes in on if yes)
            row = Row(
                f"{name}, {label}", name, peer_name, size, batch, f"`cnnlab train {flags}`" if flags else ""
            )
            side = cnnlab_side(ours, channels_last=cl, compile=comp, amp=amp) if flags else plain_side(ours)
            rows.append(measure(row, side, plain_side(twin), reps, opts.get("in_channels", 3), classes))
            del ours, twin, side
            torch._dynamo.reset()

    # The model code alone, then cnnlab's speed settings, against torchvision's AlexNet run plainly.
    # The fast recipe's mixed precision where this CPU runs it fast (bf16 with AVX512-BF16 or AMX).
    fast = fast_amp_dtype("cpu")
    tv_settings = [("eager fp32", False, False, "none"), ("channels-last", True, False, "none")]
    tv_settings += [(f"channels-last + {fast}", True, False, fast)] if fast != "none" else []
    tv_settings += [("channels-last + torch.compile", True, True, "none")] if args.compile else []
    settings_rows(
        "alexnet_torchvision",
        "torchvision alexnet, eager",
        224,
        b_alex,
        tv_settings,
        torchvision.models.alexnet,
    )
    # The fast recipe's net (28 px, batch norm): the same net run plainly (eager fp32, NCHW) is the peer.
    small = [("channels-last", True, False, "none")]
    small += [(f"channels-last + {fast} (the fast recipe)", True, False, fast)] if fast != "none" else []
    small += [("channels-last + torch.compile", True, True, "none")] if args.compile else []
    settings_rows(
        "alexnet_fast", "the same net, eager NCHW", 28, b_small, small, None, classes=10, in_channels=1
    )

    if args.quick:  # the big nets add minutes and no code path the rows above have not run
        return rows
    torch.manual_seed(0)
    row = Row(
        "alexnet (paper's net), eager fp32",
        "alexnet",
        "torchvision alexnet at 227",
        227,
        b_alex,
        "different nets: 96-256-384-384-256 convs + LRN vs 64-192-384-256-256",
    )
    rows.append(
        measure(row, plain_side(models.create("alexnet")), plain_side(torchvision.models.alexnet()), reps)
    )

    settings_rows(
        "vgg11",
        "torchvision vgg11, eager",
        224,
        b_vgg,
        [("eager fp32", False, False, "none")],
        torchvision.models.vgg11,
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
        "rate. SGD lr 0.01, momentum 0.9, weight decay 5e-4, cross-entropy on random input; 1000 classes, "
        "except alexnet_fast (10 classes, 1 channel, as for Fashion-MNIST).\n"
    )


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=4, help="timed steps per side (default 4)")
    p.add_argument("--batch", type=int, default=16, help="AlexNet batch (default 16)")
    p.add_argument("--vgg-batch", type=int, default=4, help="VGG-11 batch (default 4)")
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
