"""BatchLoader: seeded, shardable, resumable batches for every data set.

Order: a permutation drawn from (seed, epoch); rank r of w takes the r-th contiguous chunk of it (training
drops the last n mod w samples so every rank runs the same number of steps, as DDP needs). Augmentation:
batch `step` of `epoch` draws its crops, flips and lighting from a generator seeded by (seed, epoch,
step), so a run resumed at `start_step` sees exactly the batches an uninterrupted run would.

In-memory data sets are indexed on the device; folder data sets are decoded by DataLoader workers to the
base geometry (uint8) and then go through the same batched augmentation on the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cnnlab.choices import VIEW_COUNTS
from cnnlab.data.augment import VIEWS, AugmentConfig, Augmenter
from cnnlab.data.dataset import ArrayDataset
from cnnlab.data.folder import FolderDataset
from cnnlab.data.stats import DataStats
from cnnlab.errors import CnnlabError

_ORDER, _AUGMENT = 0, 1  # stream tags: the permutation and the augmentation never share a seed


def derive_seed(*parts: int) -> int:
    """A 64-bit seed mixed from integers (numpy's SeedSequence: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([p % 2**64 for p in parts]).generate_state(1, np.uint64)[0])


def generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def shard_indices(
    n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
    drop_remainder: bool = True,
) -> torch.Tensor:  # fmt: skip
    """The sample indices rank `rank` visits in `epoch`, in order.

    shuffle: a permutation drawn from (seed, epoch), else 0..n-1. drop_remainder (training): n // w
    samples per rank, shards disjoint, together the whole permutation but its last n mod w entries.
    Otherwise (evaluation) ceil(n / w) per rank, the last rank taking what is left: every sample once.
    """
    order = torch.randperm(n, generator=generator(seed, _ORDER, epoch)) if shuffle else torch.arange(n)
    per = n // world_size if drop_remainder else math.ceil(n / world_size)
    return order[rank * per : min(n, (rank + 1) * per)]


class _StepSampler(Sampler[list[int]]):
    """The batches of one epoch, set before each pass (workers stay alive across epochs)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Decode(Dataset[tuple[torch.Tensor, int, str]]):
    """Runs in the workers: decode and bring to the base square; a broken file comes back as a message
    (raising inside a worker would reach the user as a multi-line traceback)."""

    def __init__(self, ds: FolderDataset, side: int) -> None:
        self.ds, self.side = ds, side

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, str]:
        try:
            return self.ds.read(i, self.side), self.ds.samples[i][1], ""
        except CnnlabError as exc:
            return torch.zeros(self.ds.channels, self.side, self.side, dtype=torch.uint8), -1, str(exc)


def _collate(items: list[tuple[torch.Tensor, int, str]]) -> tuple[torch.Tensor, torch.Tensor, str]:
    errors = [e for _, _, e in items if e]
    return (
        torch.stack([x for x, _, _ in items]),
        torch.tensor([y for _, y, _ in items], dtype=torch.int64),
        errors[0] if errors else "",
    )


# An in-memory evaluation set whose finished batches (every view, normalised, float32) fit in this many bytes
# is prepared once and kept: a run validates on the same images after every epoch (Fashion-MNIST's test set
# with its mirrors: 63 MB), and preparing them again cost about a sixth of each validation.
EVAL_CACHE_BYTES = 256 * 2**20


def _check_args(
    ds: ArrayDataset | FolderDataset,
    batch_size: int,
    stats: DataStats,
    rank: int,
    world_size: int,
    views: str,
) -> None:
    if batch_size < 1:
        raise CnnlabError(f"batch size must be at least 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    if views not in VIEWS:
        raise CnnlabError(f"unknown test views {views!r}; choose one of {', '.join(VIEWS)}")
    if stats.channels != ds.channels:
        raise CnnlabError(
            f"statistics are for {stats.channels}-channel images but {ds.name} has {ds.channels}; "
            "compute them on this data set's training split"
        )


class BatchLoader:
    """Batches of (x, y) on `device`: training x [B, C, s, s], evaluation x [V, B, C, s, s]."""

    def __init__(
        self,
        ds: ArrayDataset | FolderDataset,
        batch_size: int,
        *,
        train: bool,
        aug: AugmentConfig,
        stats: DataStats,
        seed: int,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
        views: str = "center",
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        _check_args(ds, batch_size, stats, rank, world_size, views)
        self.dataset, self.batch_size, self.train = ds, batch_size, train
        self.aug, self.stats, self.seed, self.views = aug, stats, seed, views
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.classes = ds.classes
        n = len(ds)
        per_rank = len(self._shard(0))
        if per_rank == 0:
            raise CnnlabError(
                f"{ds.name} has {n} {'images' if n != 1 else 'image'}: too few for {world_size} ranks"
            )
        # Training drops the incomplete last batch (a batch of one breaks batch norm), unless the shard is
        # smaller than one batch: then that shard is the one batch.
        self.steps = max(1, per_rank // batch_size) if train else math.ceil(per_rank / batch_size)
        self._dl: DataLoader[Any] | None = None
        if isinstance(ds, ArrayDataset):
            images, self._labels = ds.on(self.device)
            size = ds.image_size
        else:
            side = aug.resize or int(stats.mean_image.shape[-1])
            size = (side, side)
            self._sampler = _StepSampler()
            self._dl = self._decoder(ds, side, num_workers, pin_memory)
        self.augmenter = Augmenter(aug, stats, size, self.device, prepad=train and self._dl is None)
        if not train and views == "tencrop":
            self.augmenter.tencrop_pad()  # refused here, before any batch, when the crops cannot differ
        if self._dl is None:
            # Training pads its copy once (a few MB) instead of every batch.
            self._images = self.augmenter.pad_source(images) if train else images
        self._keep_eval = (
            not train
            and self._dl is None
            and VIEW_COUNTS[views] * per_rank * ds.channels * aug.input_size**2 * 4 <= EVAL_CACHE_BYTES
        )
        self._eval_batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def _decoder(
        self, ds: FolderDataset, side: int, num_workers: int, pin_memory: bool | None
    ) -> DataLoader[Any]:
        """Image files decoded (in `num_workers` processes) to uint8 at `side`, batched as _sampler asks."""
        pin = self.device.type == "cuda" if pin_memory is None else pin_memory
        return DataLoader(
            _Decode(ds, side),
            batch_sampler=self._sampler,
            num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=pin and torch.cuda.is_available(),
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return self.steps

    def _shard(self, epoch: int) -> torch.Tensor:
        return shard_indices(
            len(self.dataset), seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size,
            shuffle=self.train, drop_remainder=self.train,
        )  # fmt: skip

    def indices(self, epoch: int) -> torch.Tensor:
        """The sample indices of this rank's batches in `epoch`, in the order they are yielded."""
        return self._shard(epoch)[: self.steps * self.batch_size]

    def _augment(self, x: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        if self.train:
            return self.augmenter.train(x, generator(self.seed, _AUGMENT, epoch, step))
        return self.augmenter.eval(x, self.views)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield batches `start_step`..len(self)-1 of `epoch`, as an uninterrupted epoch would."""
        if not 0 <= start_step <= self.steps:
            raise CnnlabError(f"start step {start_step} outside the epoch's 0..{self.steps} steps")
        order, B = self.indices(epoch), self.batch_size
        batches = [order[s * B : (s + 1) * B] for s in range(start_step, self.steps)]
        if self._dl is None:
            if self._eval_batches is not None:  # evaluation: the same batches every time
                yield from self._eval_batches[start_step:]
                return
            kept: list[tuple[torch.Tensor, torch.Tensor]] = []
            for step, idx in enumerate(batches, start_step):
                idx = idx.to(self.device, non_blocking=True)
                batch = self._augment(self._images.index_select(0, idx), epoch, step), self._labels[idx]
                if self._keep_eval and start_step == 0:
                    kept.append(batch)
                yield batch
            if self._keep_eval and start_step == 0:
                self._eval_batches = kept
            return
        self._sampler.batches = [b.tolist() for b in batches]
        for step, (x, y, error) in enumerate(self._dl, start_step):
            if error:
                raise CnnlabError(error)
            x = x.to(self.device, non_blocking=True)
            yield self._augment(x, epoch, step), y.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
