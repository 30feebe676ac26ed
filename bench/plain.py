"""The peer: Fashion-MNIST trained the way a plain PyTorch + torchvision script does it.

`torchvision.datasets.FashionMNIST` hands out one PIL image at a time; a `transforms.Compose` of
`RandomCrop(padding)`, `RandomHorizontalFlip`, `ToTensor`, `Normalize` runs per image inside the
`DataLoader` workers; the loop is the textbook zero_grad / forward / backward / step with SGD + momentum
and a one-cycle learning-rate schedule. Nothing here imports cnnlab's data or trainer, so the peer shares
nothing with what it is compared against except the network.
"""

from __future__ import annotations

import gzip
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from bench.common import FASHION_MNIST_DIR, OUT_DIR

TORCHVISION_ROOT = OUT_DIR / "torchvision"
# The usual published constants for Fashion-MNIST (pixel mean and std of the training set in [0, 1]).
MEAN, STD = (0.2860,), (0.3530,)


def fashion_mnist(train: bool, transform: Callable | None) -> datasets.FashionMNIST:
    """torchvision's own data set class, fed from Debian's gzip files (torchvision reads them unpacked)."""
    raw = TORCHVISION_ROOT / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte"
            if not (raw / name).exists():
                src = FASHION_MNIST_DIR / f"{name}.gz"
                if not src.exists():
                    raise SystemExit(f"{src} not found: install Debian's dataset-fashion-mnist (make data)")
                with gzip.open(src, "rb") as fin, open(raw / f"{name}.part", "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                (raw / f"{name}.part").rename(raw / name)
    return datasets.FashionMNIST(str(TORCHVISION_ROOT), train=train, transform=transform, download=False)


def per_image_transform(size: int = 28, pad: int = 2, train: bool = True) -> transforms.Compose:
    """The usual torchvision pipeline; `Resize` only when the network wants another size than 28."""
    steps: list[Callable] = [transforms.Resize(size)] if size != 28 else []
    if train:
        steps += [transforms.RandomCrop(size, padding=pad), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)


def loader(
    train: bool, batch_size: int, num_workers: int, size: int = 28, pad: int = 2, seed: int = 0
) -> DataLoader:
    ds = fashion_mnist(train, per_image_transform(size, pad, train))
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


@dataclass
class PlainRecipe:
    """A standard recipe for a small CNN on Fashion-MNIST: SGD, Nesterov momentum, one-cycle LR."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05  # peak of the one-cycle schedule
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    num_workers: int = 2


@torch.no_grad()
def accuracy(model: nn.Module, test: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in test:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train()
    return correct / total


def train_plain(
    model: nn.Module, recipe: PlainRecipe, target: float | None = None, max_train_s: float | None = None
) -> Iterator[dict]:
    """Train and yield one record per epoch: cumulative training seconds (evaluation excluded), test
    accuracy. Stops after the epoch that reaches `target` or passes `max_train_s` of training."""
    train = loader(True, recipe.batch_size, recipe.num_workers)
    test = loader(False, 1000, recipe.num_workers)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=True,
        weight_decay=recipe.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.epochs * len(train))
    train_s = 0.0
    model.train()
    for epoch in range(recipe.epochs):
        t0 = time.perf_counter()
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
        train_s += time.perf_counter() - t0
        acc = accuracy(model, test)
        yield {"epoch": epoch + 1, "train_s": train_s, "test_acc": acc, "loss": float(loss)}
        if (target is not None and acc >= target) or (max_train_s is not None and train_s >= max_train_s):
            return
