"""`cnnlab train`'s flags, one per TrainConfig setting (settings.add_arguments); the command itself
(train_run.run_train) and torch are imported only once the arguments have parsed."""

from __future__ import annotations

from typing import Any

from cnnlab.commands import Lazy
from cnnlab.settings import add_arguments


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (paper or fast recipe), resumable, distributed with torchrun",
        description="Train a model. Writes config.json, metrics.csv, curves.png, checkpoints/ and "
        "summary.txt into --out. Run with torchrun for distributed data parallel training. The defaults "
        "are the paper's recipe (Krizhevsky et al. 2012; the section of each is in its help).",
    )
    add_arguments(p)
    p.set_defaults(func=Lazy("cnnlab.commands.train_run", "run_train"))
