"""Flags of the picture commands (cnnlab/pictures/): filters, neighbors, activations, occlusion, gradcam,
mistakes and report. Their bodies import torch and live in pictures_run.py."""

from __future__ import annotations

from typing import Any

from cnnlab import argtypes
from cnnlab.choices import DEVICES, VIEWS
from cnnlab.commands import Lazy
from cnnlab.commands.common import add_data_args

CKPT_HELP = "checkpoint file of a trained run"
RUN_CHECKPOINTS = ("best", "last")  # the checkpoints a run folder holds (cnnlab.pictures.runpage)
RUN = "cnnlab.commands.pictures_run"  # the commands' bodies (torch)
FORCE_HELP = "replace an existing output file (never one of the command's inputs)"


def register_cli(sub: Any) -> None:
    _add_filters(sub)
    _add_neighbors(sub)
    _add_activations(sub)
    _add_occlusion(sub)
    _add_gradcam(sub)
    _add_mistakes(sub)
    _add_report(sub)


def _add_filters(sub: Any) -> None:
    p = sub.add_parser("filters", help="the first conv layer's kernels as an image (the paper's Figure 3)")
    p.add_argument("source", metavar="CKPT", help="checkpoint file (or a model name with --init)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--init", action="store_true", help="SOURCE is a model name: draw its untrained kernels")
    p.add_argument(
        "--in-channels", type=argtypes.positive, default=3, help="with --init: 1 for grey inputs (3)"
    )
    p.add_argument(
        "--cols", type=argtypes.positive, help="kernels per row in each panel (default: a square-ish grid)"
    )
    p.add_argument(
        "--seed", type=argtypes.seed, default=0, help="with --init: the random initialisation's seed"
    )
    p.set_defaults(func=Lazy(RUN, "run_filters"))


def _add_neighbors(sub: Any) -> None:
    p = sub.add_parser(
        "neighbors", help="test images and their nearest training images in feature space (Fig. 4)"
    )
    p.add_argument("checkpoint", metavar="CKPT", help=CKPT_HELP)
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_data_args(p, default=None)
    p.add_argument("--queries", type=argtypes.positive, default=8, help="test images to look up (8)")
    p.add_argument("--k", type=argtypes.positive, default=6, help="neighbours per query (6, as in the paper)")
    p.add_argument(
        "--bank-size", type=argtypes.positive, help="search a random part of the training set (default: all)"
    )
    p.add_argument("--batch-size", type=argtypes.positive, default=256, help="feature extraction batch (256)")
    p.add_argument("--device", choices=DEVICES, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="which test images are drawn")
    p.set_defaults(func=Lazy(RUN, "run_neighbors"))


def _add_activations(sub: Any) -> None:
    p = sub.add_parser(
        "activations",
        help="feature maps of every layer for one image (Zeiler & Fergus 2014)",
        description="Draw each layer's most active feature maps for one image, one row per layer "
        "labelled with its name and shape.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help=CKPT_HELP)
    p.add_argument("image", metavar="IMAGE", help="image file (png, jpg, ...)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--layers", metavar="L1,L2", help="layers to show, e.g. conv1,conv2 (default: all)")
    p.add_argument(
        "--top", type=argtypes.positive, default=8, metavar="K", help="maps per layer, most active first (8)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=Lazy(RUN, "run_activations"))


def _add_occlusion(sub: Any) -> None:
    p = sub.add_parser(
        "occlusion",
        help="occlusion sensitivity map of one image (Zeiler & Fergus 2014)",
        description="Slide a grey square (the data's mean) over an image and map the class probability.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help=CKPT_HELP)
    p.add_argument("image", metavar="IMAGE", help="image file (png, jpg, ...)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument(
        "--patch", type=argtypes.positive, default=8, help="side of the grey square in input pixels (8)"
    )
    p.add_argument("--stride", type=argtypes.positive, default=4, help="step between square positions (4)")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="class to map (default: predicted)")
    p.add_argument(
        "--batch-size", type=argtypes.positive, default=256, help="occluded copies per forward pass (256)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=Lazy(RUN, "run_occlusion"))


def _add_gradcam(sub: Any) -> None:
    p = sub.add_parser(
        "gradcam",
        help="Grad-CAM heat maps: where the net looks for a class (Selvaraju et al. 2017)",
        description="Overlay each image with the Grad-CAM map of the predicted (or a chosen) class.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help=CKPT_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (png, jpg, ...)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNG files")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--layer", help="feature-map layer (default: the last conv stage, e.g. conv5)")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="class to explain (default: predicted)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=Lazy(RUN, "run_gradcam"))


def _add_mistakes(sub: Any) -> None:
    p = sub.add_parser(
        "mistakes",
        help="the most confident wrong predictions on a data set, as a grid",
        description="Evaluate a checkpoint on a data set and draw its most confident mistakes.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help=CKPT_HELP)
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    add_data_args(p, default=None)
    p.add_argument("--split", default="test", choices=("train", "test", "val"), help="split (default test)")
    p.add_argument("--count", type=argtypes.positive, default=24, metavar="N", help="mistakes to show (24)")
    p.add_argument("--views", default="center", choices=VIEWS, help="test views")
    p.add_argument("--limit", type=argtypes.positive, metavar="N", help="evaluate the first N images only")
    p.add_argument("--batch-size", type=argtypes.positive, default=256, help="images per batch (256)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=Lazy(RUN, "run_mistakes"))


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page for a training run",
        description="Write an HTML page (pictures embedded, no network needed) with a run's settings, "
        "curves, numbers, confusion matrix, mistakes, kernels, neighbours and Grad-CAM maps.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `cnnlab train` (its --out)")
    p.add_argument("-o", "--output", metavar="FILE.html", help="page to write (default RUN_DIR/report.html)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument(
        "--checkpoint", default="best", choices=RUN_CHECKPOINTS, help="which checkpoint to look inside"
    )
    p.add_argument(
        "--mistakes",
        type=argtypes.non_negative,
        default=24,
        metavar="N",
        help="mistakes to show (24; 0: none)",
    )
    p.add_argument(
        "--queries", type=argtypes.non_negative, default=6, metavar="N", help="neighbour rows (6; 0: none)"
    )
    p.add_argument("--bank-size", type=argtypes.non_negative, default=10_000, metavar="N",
                   help="training images the neighbour search scans (10000; 0: all)")  # fmt: skip
    p.add_argument(
        "--data-dir", metavar="DIR", help="where the run's data set is now (default: where it was)"
    )
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="folder data sets: skip unreadable image files (and list them) instead of stopping",
    )
    p.add_argument(
        "--gradcams", type=argtypes.non_negative, default=8, metavar="N", help="Grad-CAM images (8; 0: none)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=Lazy(RUN, "run_report"))
