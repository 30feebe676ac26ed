"""The in-memory data set: uint8 images and int64 labels as tensors, plus what a run records about them."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch.utils.data import Dataset

from cnnlab.errors import CnnlabError

SPLITS = {"train": "train", "test": "test", "val": "test"}


def canonical_split(split: str) -> str:
    """'train' stays, 'test' and 'val' both mean the held-out split (the data sets here have only two)."""
    try:
        return SPLITS[split]
    except KeyError:
        raise CnnlabError(f"unknown split {split!r}: use 'train', 'test' or 'val'") from None


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the raw bytes of contiguous CPU tensors, shape included (a reshape changes the hash)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(repr((str(t.dtype), tuple(t.shape))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class ArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A data set small enough to keep whole: `images` uint8 [N, C, H, W] and `labels` int64 [N] (CPU).

    Augmentation never touches it image by image: `BatchLoader` indexes whole batches out of a device
    copy (`on(device)`, made once and shared by every loader over this data set).
    """

    def __init__(
        self,
        name: str,
        split: str,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: list[str],
        source: str = "",
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} images")
        self.name = name
        self.split = split
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64).contiguous()
        self.classes = list(classes)
        self.source = source  # where the files were read from, for messages and `cnnlab data`
        self._digest: str | None = None
        self._device_copies: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def identity(self) -> dict[str, Any]:
        """What `config.json` records so a later run can tell whether it saw the same data."""
        if self._digest is None:
            self._digest = tensor_digest(self.images, self.labels)
        return {
            "name": self.name,
            "split": self.split,
            "count": len(self),
            "shape": list(self.images.shape[1:]),
            "classes": len(self.classes),
            "sha256": self._digest,
        }

    def on(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) on `device`, copied once as uint8 (4x fewer bytes than float32 to move)."""
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:  # "cuda" and "cuda:0" are one copy, not two
            dev = torch.device("cuda", torch.cuda.current_device())
        key = str(dev)
        if key not in self._device_copies:
            if dev.type == "cpu":
                self._device_copies[key] = (self.images, self.labels)
            else:
                self._device_copies[key] = (self.images.to(dev), self.labels.to(dev))
        return self._device_copies[key]

    def subset(self, indices: torch.Tensor | list[int]) -> ArrayDataset:
        """A new data set with the given samples (e.g. a quick run on part of the data)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return ArrayDataset(
            self.name, self.split, self.images[idx], self.labels[idx], self.classes, source=self.source
        )

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        n, k = len(self), len(self.classes)
        return f"ArrayDataset({self.name!r}, {self.split!r}, {n} x {c}x{h}x{w}, {k} classes)"


def check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    """Labels outside [0, num_classes) would index past the network's output: refuse them at load time."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise CnnlabError(
            f"{where}: labels range from {int(labels.min())} to {int(labels.max())}, "
            f"expected 0..{num_classes - 1}; the file is corrupt or belongs to another data set"
        )


def limit(ds: Any, n: int | None, seed: int, shuffle: bool) -> Any:
    """The first `n` images of `ds`, or with `shuffle` a random `n` drawn with `seed` (in expectation the
    class balance of the whole); `ds` itself when `n` is None, 0 or at least its size."""
    if not n or n >= len(ds):
        return ds
    if shuffle:
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    else:
        idx = torch.arange(n)
    return ds.subset(idx)
