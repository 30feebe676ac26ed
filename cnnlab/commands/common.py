"""Flags and help texts that several commands share (torch-free, like the rest of cnnlab.commands)."""

from __future__ import annotations

import argparse

from cnnlab.choices import DATASETS, FOLDER_DATASET

MODEL_HELP = (
    "model name (see `cnnlab models`), or your own network as path/to/file.py:Class or package.module:attr "
    "(importing it runs that file's code; it is built with no arguments, at 3x224x224 unless --input-size)"
)
CHECKPOINT_HELP = "checkpoint file of a trained run (RUN/checkpoints/best.pt)"


def add_data_args(
    parser: argparse.ArgumentParser,
    default: str | None = "fashion-mnist",
    required: bool | None = None,
    default_text: str | None = None,
) -> None:
    """The data flags every command that reads a data set shares: --dataset, --data-dir, --download and
    --skip-bad-images. `required` defaults to "no default given"; `default_text` describes a default
    the command works out itself (eval: the data set the checkpoint saw)."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=default,
        required=default is None if required is None else required,
        metavar="NAME",
        help=f"one of {', '.join((*DATASETS, FOLDER_DATASET))} (default: {default_text or default})",
    )
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the data set's files are (default: the system location, then ~/.cache/cnnlab)",
    )
    g.add_argument(
        "--download",
        action="store_true",
        help="fetch a missing data set through torchvision (needs a network)",
    )
    g.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="folder data sets: skip unreadable image files (and list them) instead of stopping",
    )
