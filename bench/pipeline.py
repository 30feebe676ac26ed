"""Input pipeline: training images/s of cnnlab's batched augmentation against torchvision's per-image one.

Ours: `data.BatchLoader` over Fashion-MNIST held as one uint8 tensor; each batch is cropped, flipped and
normalised in a few whole-batch tensor ops, in the training process. Peer: `torchvision.datasets.
FashionMNIST` (PIL images) with `[Resize,] RandomCrop(padding), RandomHorizontalFlip, ToTensor,
Normalize` per image in a `DataLoader` with worker processes. Both apply the same augmentation: 28 px
with 2 px padding for the small net; at 227 the trainer's default for AlexNet on 28 px images (resize to
259, random 227 crop, flip).

Rows: the pipeline alone (draining batches), then feeding the same model (alexnet_small at 28 px; a
cheap one-conv stand-in and alexnet at 227), with the share of the loop spent waiting for the next batch.

    python -m bench.pipeline [--quick] [--write] [--workers N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench import common, plain
from cnnlab import data, models

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
Step = Callable[[torch.Tensor, torch.Tensor], None] | None


@dataclass(frozen=True)
class Geometry:
    size: int
    pad: int
    resize: int | None

    def augment(self) -> data.AugmentConfig:
        return data.AugmentConfig(
            input_size=self.size,
            resize=self.resize,
            random_crop=True,
            pad=self.pad,
            flip=True,
            normalize="channel",
        )


SMALL = Geometry(28, 2, None)
LARGE = Geometry(227, 0, 259)  # what training.recipes.resolve picks for a 227 net on 28 px images


class OursFeed:
    def __init__(self, ds: data.ArrayDataset, stats: data.DataStats, geo: Geometry, batch: int) -> None:
        self.loader = data.BatchLoader(
            ds, batch, train=True, aug=geo.augment(), stats=stats, seed=0, device="cpu"
        )
        self.next_epoch = 0

    def batches(self, k: int) -> Batches:
        it = self.loader.epoch(self.next_epoch)  # a new permutation each repetition
        self.next_epoch += 1
        for _ in range(k):
            yield next(it)


class PeerFeed:
    def __init__(self, geo: Geometry, batch: int, workers: int) -> None:
        # Not persistent (DataLoader's default): each repetition starts its own workers and stops them,
        # so no peer worker runs while cnnlab's repetition is being timed.
        self.loader = plain.loader(True, batch, workers, geo.size, geo.pad, geo.resize, persistent=False)

    def batches(self, k: int) -> Batches:
        it = iter(self.loader)
        for _ in range(k):
            yield next(it)
        del it  # shuts the workers down inside the timed repetition


def consume(batches: Batches, step: Step) -> dict[str, float]:
    """Drain `batches`, running `step` on each; seconds spent blocked on the next batch, images seen."""
    wait, images = 0.0, 0
    t = time.perf_counter()
    for x, y in batches:
        wait += time.perf_counter() - t
        if step is not None:
            step(x, y)
        images += len(y)
        t = time.perf_counter()
    return {"wait": wait, "images": images}


def sgd_step(model: nn.Module) -> Step:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def stand_in() -> nn.Module:
    """A net that costs almost nothing at 227 px, so the pipeline is what the loop waits for."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 11, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )


@dataclass
class Row:
    label: str
    model: str
    batch: int
    steps: int
    ours_ips: float = 0.0
    peer_ips: float = 0.0
    ours_wait: float = 0.0
    peer_wait: float = 0.0

    @property
    def ratio(self) -> float:
        return self.ours_ips / self.peer_ips


def measure(
    row: Row, ours: OursFeed, peer: PeerFeed, make_model: Callable[[], nn.Module] | None, reps: int
) -> Row:
    steps: dict[str, Step] = {"ours": None, "peer": None}
    if make_model is not None:
        torch.manual_seed(0)
        model = make_model()
        twin = make_model()
        twin.load_state_dict(model.state_dict())
        steps = {"ours": sgd_step(model), "peer": sgd_step(twin)}
    t = common.interleave(
        {
            "ours": lambda: consume(ours.batches(row.steps), steps["ours"]),
            "peer": lambda: consume(peer.batches(row.steps), steps["peer"]),
        },
        reps,
        warmup=1,
    )
    images = row.batch * row.steps
    row.ours_ips, row.peer_ips = t.rate("ours", images), t.rate("peer", images)
    row.ours_wait = t.extra("ours", "wait") / t.median("ours")
    row.peer_wait = t.extra("peer", "wait") / t.median("peer")
    print(
        f"  {row.label}: ours {row.ours_ips:.0f} img/s ({row.ours_wait:.0%} waiting), peer "
        f"{row.peer_ips:.0f} img/s ({row.peer_wait:.0%} waiting), ratio {row.ratio:.2f}",
        flush=True,
    )
    return row


def run(args: argparse.Namespace) -> list[Row]:
    q = args.quick
    reps = 1 if q else args.reps
    train = data.load("fashion-mnist", "train")
    assert isinstance(train, data.ArrayDataset)
    stats = data.compute_stats(train)
    rows: list[Row] = []
    w = args.workers

    def small() -> nn.Module:  # the fast recipe's net (batch norm on)
        return models.create("alexnet_small", num_classes=10, in_channels=1, batch_norm=True)

    def alexnet() -> nn.Module:
        return models.create("alexnet", num_classes=10, in_channels=1)

    plan: list[tuple[str, Geometry, int, int, Callable[[], nn.Module] | None, str]] = [
        ("28 px, pipeline alone", SMALL, 256, 4 if q else 60, None, "-"),
        ("28 px, feeding alexnet_small", SMALL, 256, 2 if q else 15, small, "alexnet_small (batch norm)"),
        ("227 px, pipeline alone", LARGE, 64, 1 if q else 12, None, "-"),
        ("227 px, feeding a one-conv stand-in", LARGE, 64, 1 if q else 12, stand_in, "conv 11x11/8 + linear"),
    ]
    if not q:
        plan.append(("227 px, feeding alexnet", LARGE, 32, 2, alexnet, "alexnet (paper's net)"))
    for label, geo, batch, k, make, model_name in plan:
        row = Row(label, model_name, batch, k)
        rows.append(
            measure(
                row,
                OursFeed(train, stats, geo, batch),
                PeerFeed(geo, batch, w),
                make,
                reps if make is not alexnet else min(reps, 2),
            )
        )
    return rows


def markdown(rows: list[Row], workers: int, reps: int) -> str:
    body = common.table(
        [
            "case",
            "model",
            "batch x steps",
            "cnnlab img/s",
            "peer img/s",
            "ratio",
            "cnnlab waiting",
            "peer waiting",
        ],
        [
            [
                r.label,
                r.model,
                f"{r.batch} x {r.steps}",
                f"{r.ours_ips:.0f}",
                f"{r.peer_ips:.0f}",
                f"**{r.ratio:.1f}**",
                f"{r.ours_wait:.0%}",
                f"{r.peer_wait:.0%}",
            ]
            for r in rows
        ],
    )
    return (
        f"{body}\n\nratio = cnnlab images/s / peer images/s, medians of {reps} interleaved repetitions "
        f"(fewer for alexnet). Peer: torchvision FashionMNIST + per-image transforms in a DataLoader with "
        f"{workers} worker processes (not persistent: each repetition pays its worker start-up, as every "
        "epoch does by default). 'waiting' = share of the loop's wall time spent blocked on the next "
        "batch; for cnnlab that is the augmentation itself, done in the training process.\n"
    )


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3, help="repetitions per side (default 3)")
    p.add_argument("--workers", type=int, default=2, help="peer DataLoader workers (default 2, one per core)")
    args = p.parse_args()
    load = common.setup(args)
    rows = run(args)
    text = common.section(markdown(rows, args.workers, 1 if args.quick else args.reps), load)
    print(text)
    if args.write:
        common.update_benchmarks_md("pipeline", text)


if __name__ == "__main__":
    main()
