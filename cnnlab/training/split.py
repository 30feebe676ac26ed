"""The held-out validation split (`--val-split`): training images the run never trains on.

They decide what the test set must not: which epoch is best.pt and, in the paper recipe, when the learning
rate drops (section 5: "when the validation error rate stopped improving"). The test set is then only
reported. Without a split the validation set is the test set, as it was before this option existed.

The split is stratified (each class gives its share of the held-out images; the largest remainders take
the last few) and drawn from the run's seed alone, so the same --seed holds out the same images in every
run, on every rank and when the run resumes.
"""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.data.loader import derive_seed

_STREAM = 0x5E1D  # keeps the split's random stream apart from the data order's and augmentation's


def hold_out(ds: Any, count: int, seed: int) -> tuple[Any, Any]:
    """(the images to train on, the `count` held out), both subsets of `ds` in their original order."""
    labels = torch.as_tensor(ds.labels, dtype=torch.int64)
    n = len(labels)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, _STREAM)))
    per_class = torch.bincount(labels, minlength=len(ds.classes)).double()
    exact = per_class * count / n
    take = exact.floor().long()
    short = count - int(take.sum())
    if short:  # the classes with the largest remainders give one more image each (ties: lower index)
        remainder = exact - take
        take[torch.argsort(-remainder, stable=True)[:short]] += 1
    shuffled = labels[order]
    held = torch.cat([order[shuffled == c][: int(k)] for c, k in enumerate(take.tolist()) if k])
    keep = torch.ones(n, dtype=torch.bool)
    keep[held] = False
    train_part = ds.subset(torch.nonzero(keep).flatten())
    held_part = ds.subset(held.sort().values)
    held_part.split = "train, held out"  # its identity says where its images come from
    return train_part, held_part
