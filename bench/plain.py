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
from torch.utils.data import DataLoader, RandomSampler, Subset
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


def per_image_transform(
    size: int = 28, pad: int = 2, train: bool = True, resize: int | None = None
) -> transforms.Compose:
    """The usual torchvision pipeline; `Resize` only where the network wants another size than 28."""
    steps: list[Callable] = [transforms.Resize(resize)] if resize else []
    if train:
        steps += [transforms.RandomCrop(size, padding=pad or None), transforms.RandomHorizontalFlip()]
    elif resize and resize != size:
        steps.append(transforms.CenterCrop(size))
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    return transforms.Compose(steps)


def loader(
    train: bool,
    batch_size: int,
    num_workers: int,
    size: int = 28,
    pad: int = 2,
    resize: int | None = None,
    seed: int = 0,
    persistent: bool = True,
) -> DataLoader:
    ds = fashion_mnist(train, per_image_transform(size, pad, train, resize))
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=num_workers,
        persistent_workers=persistent and num_workers > 0,
        pin_memory=torch.cuda.is_available(),  # the usual setting when a GPU is there
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
def accuracy(model: nn.Module, test: DataLoader, device: str = "cpu") -> tuple[float, float]:
    """Test accuracy of the image alone, and of the softmax averaged with its mirror's."""
    model.eval()
    correct = correct_flip = total = 0
    for x, y in test:
        x, y = x.to(device), y.to(device)
        p = model(x).softmax(1)
        correct += int((p.argmax(1) == y).sum())
        correct_flip += int(((p + model(x.flip(-1)).softmax(1)).argmax(1) == y).sum())
        total += len(y)
    model.train()
    return correct / total, correct_flip / total


def _limit(dl: DataLoader, n: int | None) -> DataLoader:
    """The same loader over the first n images (a quick run), keeping its other settings."""
    if n is None:
        return dl
    return DataLoader(
        Subset(dl.dataset, range(n)),
        batch_size=dl.batch_size,
        shuffle=isinstance(dl.sampler, RandomSampler),
        drop_last=dl.drop_last,
        num_workers=dl.num_workers,
        persistent_workers=dl.persistent_workers,
    )


def train_plain(
    model: nn.Module,
    recipe: PlainRecipe,
    target: float | None = None,
    limit_train: int | None = None,
    limit_val: int | None = None,
    device: str = "cpu",
    max_train_s: float | None = None,
) -> Iterator[dict]:
    """Train and yield one record per epoch: its training seconds (evaluation excluded), test accuracy
    (plain and flip-averaged). Stops after the epoch that reaches `target` or that takes the training
    clock past `max_train_s`, if given."""
    train = _limit(loader(True, recipe.batch_size, recipe.num_workers), limit_train)
    test = _limit(loader(False, 1000, recipe.num_workers), limit_val)
    model = model.to(device)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=True,
        weight_decay=recipe.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=recipe.epochs * len(train))
    model.train()
    clock = 0.0
    for epoch in range(recipe.epochs):
        t0 = time.perf_counter()
        for x, y in train:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
            loss.backward()
            opt.step()
            sched.step()
        if device != "cpu":
            torch.cuda.synchronize()
        epoch_s = time.perf_counter() - t0
        clock += epoch_s
        acc, acc_flip = accuracy(model, test, device)
        yield {"epoch": epoch + 1, "epoch_s": epoch_s, "test_acc": acc, "test_acc_flip": acc_flip}
        if (target is not None and acc >= target) or (max_train_s is not None and clock >= max_train_s):
            return
