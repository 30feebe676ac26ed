"""cnnlab's data layer: files on disk -> uint8 tensors -> augmented, normalised batches on the device.

    from cnnlab import data
    train = data.load("fashion-mnist", "train")
    stats = data.compute_stats(train)
    aug = data.AugmentConfig(input_size=28, pad=2)
    loader = data.BatchLoader(train, 128, train=True, aug=aug, stats=stats, seed=0, device="cpu")
    for x, y in loader.epoch(0): ...

See docs/data.md for the data sets, where they are looked for, and the augmentation's details.
"""

from __future__ import annotations

import argparse

from cnnlab.data.augment import (
    NORMALIZE,
    PCA_SCALES,
    VIEWS,
    AugmentConfig,
    Augmenter,
    crop_flip,
    eval_views,
    lighting_offsets,
)
from cnnlab.data.dataset import ArrayDataset, limit
from cnnlab.data.folder import FolderDataset, read_image
from cnnlab.data.loader import BatchLoader, derive_seed, shard_indices
from cnnlab.data.preprocess import preprocess_files
from cnnlab.data.sources import cache_dir, load, names, shared_loads
from cnnlab.data.stats import DataStats, compute_stats

__all__ = [
    "NORMALIZE",
    "PCA_SCALES",
    "VIEWS",
    "ArrayDataset",
    "AugmentConfig",
    "Augmenter",
    "BatchLoader",
    "DataStats",
    "FolderDataset",
    "cache_dir",
    "compute_stats",
    "crop_flip",
    "derive_seed",
    "eval_views",
    "lighting_offsets",
    "limit",
    "load",
    "load_from_args",
    "names",
    "preprocess_files",
    "read_image",
    "shard_indices",
    "shared_loads",
]


def load_from_args(args: argparse.Namespace, split: str) -> ArrayDataset | FolderDataset:
    """`load` with the data flags every command shares (commands.common.add_data_args)."""
    return load(
        args.dataset,
        split,
        data_dir=args.data_dir,
        download=args.download,
        skip_bad_images=args.skip_bad_images,
    )
