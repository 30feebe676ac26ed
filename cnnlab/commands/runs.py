"""Flags of the commands that use a trained checkpoint or a data set: eval, predict, export, data.
Their bodies import torch and live in runs_run.py."""

from __future__ import annotations

from typing import Any

from cnnlab import argtypes
from cnnlab.choices import DEVICES, EXPORT_FORMATS, VIEWS
from cnnlab.commands import Lazy
from cnnlab.commands.common import CHECKPOINT_HELP, add_data_args

RUN = "cnnlab.commands.runs_run"  # the commands' bodies (torch)


def register_cli(sub: Any) -> None:
    _add_eval(sub)
    _add_predict(sub)
    _add_export(sub)
    _add_data(sub)


def _add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="top-1/top-5 error of checkpoints, alone and as an ensemble",
        description="Evaluate one or more checkpoints; several average their softmax "
        "(the paper's ensembles). Writes confusion.png, per_class.csv and eval.json.",
    )
    p.add_argument(
        "checkpoints", nargs="+", metavar="CKPT", help="checkpoint files (RUN/checkpoints/best.pt)"
    )
    add_data_args(p, default=None, required=False, default_text="the one the first checkpoint saw")
    p.add_argument("--split", default="test", choices=("train", "test", "val"), help="split (default test)")
    p.add_argument(
        "--views",
        default="center",
        choices=VIEWS,
        help="test views whose softmax is averaged (tencrop: the paper's ten patches)",
    )
    p.add_argument("--batch-size", type=argtypes.positive, default=256, help="images per batch (default 256)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--limit", type=argtypes.positive, metavar="N", help="evaluate the first N images only")
    add_model_arg(p)
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument("--out", metavar="DIR", help="where to write the files (default RUN/eval next to the run)")
    p.add_argument(
        "--force", action="store_true", help="replace existing files in --out (never a checkpoint evaluated)"
    )
    p.set_defaults(func=Lazy(RUN, "run_eval"))


def _add_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files, folders or globs with a trained checkpoint",
        description="Print the most probable classes of images, preprocessed as the checkpoint's run "
        "preprocessed its test images. Give files, folders (every image below them) or quoted glob "
        "patterns ('photos/**/*.jpg').",
    )
    p.add_argument("checkpoint", metavar="CKPT", help=CHECKPOINT_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    p.add_argument("--top", type=argtypes.positive, default=5, help="how many classes to show (default 5)")
    p.add_argument(
        "--batch-size", type=argtypes.positive, default=64, help="images per forward pass (default 64)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument(
        "--csv", metavar="FILE", help="write one row per image: path, top classes and probabilities"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --csv file")
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="skip unreadable image files (and list them on stderr) instead of stopping",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    add_model_arg(p)
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.set_defaults(func=Lazy(RUN, "run_predict"))


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, TorchScript or safetensors",
        description="Export a checkpoint's network (eval mode) for other runtimes. Its folder is "
        "created if needed.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help=CHECKPOINT_HELP)
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="output format")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    p.add_argument(
        "--force", action="store_true", help="replace FILE if it exists (never the checkpoint itself)"
    )
    add_model_arg(p)
    p.set_defaults(func=Lazy(RUN, "run_export"))


def _add_data(sub: Any) -> None:
    p = sub.add_parser("data", help="show a data set: where it was found, sizes, classes, statistics")
    add_data_args(p)
    p.add_argument("--stats", action="store_true", help="also compute mean/std and the PCA lighting's eigen")
    p.add_argument("--list", action="store_true", help="list the data set names and exit")
    p.add_argument(
        "--show-skipped",
        type=argtypes.non_negative,
        default=10,
        metavar="N",
        help="list N skipped files (10)",
    )
    p.set_defaults(func=Lazy(RUN, "run_data"))


def add_model_arg(p: Any) -> None:
    """--model, for a checkpoint of the user's own network: cnnlab never imports code a checkpoint names."""
    p.add_argument(
        "--model",
        metavar="FILE.py:CLASS",
        help="the network of a run trained with --model FILE.py:CLASS (the same file; importing it runs it)",
    )
