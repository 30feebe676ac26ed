"""`cnnlab data`: what a data set holds, where it was found, and (with --stats) what training will use."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab import data


def _describe(ds: data.ArrayDataset | data.FolderDataset) -> str:
    if isinstance(ds, data.ArrayDataset):
        c, h, w = ds.images.shape[1:]
        return f"{len(ds):,} images {c}x{h}x{w}"
    skipped = f", {len(ds.skipped)} unreadable skipped" if ds.skipped else ""
    return f"{len(ds):,} image files{skipped}"


def _cmd_data(args: argparse.Namespace) -> int:
    if args.list:
        for name in data.names():
            print(name)
        return 0
    train = data.load_from_args(args, "train")
    test = data.load_from_args(args, "test")
    print(f"{train.name}  (from {train.source})")
    print(f"  train: {_describe(train)}")
    print(f"  test:  {_describe(test)}")
    shown = ", ".join(train.classes[:12]) + (", ..." if len(train.classes) > 12 else "")
    print(f"  classes ({len(train.classes)}): {shown}")
    for ds in (train, test):
        if isinstance(ds, data.FolderDataset):
            for path in ds.skipped[: args.show_skipped]:
                print(f"  skipped {path}: {ds.skip_reasons[path]}")
    if args.stats:
        stats = data.compute_stats(train)
        fmt = _fmt
        print(f"  statistics of {stats.count:,} training images, in [0, 1] pixel units:")
        print(f"    mean {fmt(stats.mean)}   std {fmt(stats.std)}")
        print(f"    PCA lighting: eigenvalues {fmt(stats.eigvals, 6)}")
        for i in range(stats.channels):
            print(f"      p{i + 1} = {fmt(stats.eigvecs[:, i])}")
    return 0


def _fmt(t: Any, digits: int = 4) -> str:
    return "[" + ", ".join(f"{float(v):.{digits}f}" for v in t) + "]"
