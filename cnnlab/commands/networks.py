"""Flags of the commands that look at a network without data or weights: models, summary, diagram,
compare, check. `models` runs here, torch-free, from the catalogue (cnnlab/catalog.py); the others'
bodies import torch and live in networks_run.py."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab import argtypes, catalog
from cnnlab.choices import DEVICES
from cnnlab.commands import Lazy
from cnnlab.commands.common import MODEL_HELP
from cnnlab.texttable import render

INPUT_SIZE_HELP = "CxHxW, e.g. 3x227x227 (default: the model's own)"
CLASSES_HELP = "classes of the last layer (1000, as ImageNet)"
RUN = "cnnlab.commands.networks_run"  # the commands' bodies (torch)


def register_cli(sub: Any) -> None:
    _add_models(sub)
    _add_summary(sub)
    _add_diagram(sub)
    _add_compare(sub)
    _add_check(sub)


def _add_models(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="list the models with parameters, input size and paper",
        description="List the zoo: each model's family, parameters (at 1000 classes; the small-image nets "
        "also at 10 grey classes, as Fashion-MNIST), default input size and paper.",
    )
    p.add_argument(
        "--num-classes",
        type=argtypes.positive,
        default=1000,
        help="classes for the parameter count (1000)",
    )
    p.set_defaults(func=run_models)


def _add_summary(sub: Any) -> None:
    p = sub.add_parser(
        "summary", help="layer table: output shapes, params, FLOPs, memory, receptive fields, size formulas"
    )
    p.add_argument("name", help=MODEL_HELP)
    p.add_argument("--input-size", help=INPUT_SIZE_HELP)
    p.add_argument("--num-classes", type=argtypes.positive, default=1000, help=CLASSES_HELP)
    p.add_argument(
        "--batch-size", type=argtypes.positive, default=1, help="batch for the activation memory column"
    )
    p.add_argument("--json", action="store_true", help="print the rows and totals as JSON")
    p.set_defaults(func=Lazy(RUN, "run_summary"))


def _add_diagram(sub: Any) -> None:
    p = sub.add_parser("diagram", help="draw the architecture with its shapes (.svg or .png, needs graphviz)")
    p.add_argument("name", help=MODEL_HELP)
    p.add_argument("-o", "--output", required=True, help="output file, .svg or .png")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--input-size", help="CxHxW, e.g. 3x227x227 (default: the model's own)")
    p.add_argument("--num-classes", type=argtypes.positive, default=1000, help=CLASSES_HELP)
    p.add_argument(
        "--depth", type=argtypes.non_negative, help="how deep to open nested blocks (default: every layer)"
    )
    p.set_defaults(func=Lazy(RUN, "run_diagram"))


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="params, FLOPs, training memory and measured speed, side by side",
        description="Compare models side by side: parameters, FLOPs per image, the memory a training "
        "step keeps for its backward pass, and measured images per second (eval forward and a full SGD "
        "step), with ratios against the first model. Counts need no memory (meta device); the timing "
        "builds each model for real, so --no-timing is instant.",
    )
    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="models to compare (the first is the reference): zoo names or your own path/to/file.py:Class "
        "(importing it runs its code)",
    )
    p.add_argument("--input-size", help="CxHxW for every model (default: each model's own)")
    p.add_argument(
        "--batch-size", type=argtypes.positive, default=32, help="training batch for memory and speed (32)"
    )
    p.add_argument("--num-classes", type=argtypes.positive, default=1000, help=CLASSES_HELP)
    p.add_argument("--device", choices=DEVICES, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--steps", type=argtypes.positive, default=3, help="timed iterations per measure (3)")
    p.add_argument("--warmup", type=argtypes.non_negative, default=1, help="untimed iterations first (1)")
    p.add_argument("--no-timing", action="store_true", help="counts only, no speed measurement (instant)")
    p.add_argument("--out", metavar="DIR", help="folder for compare.txt, compare.json and compare.png")
    p.add_argument(
        "--force", action="store_true", help="replace existing files in --out (never a network file compared)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(func=Lazy(RUN, "run_compare"))


def _add_check(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="compare your own network with the paper's, layer by layer (runs your file's code)",
        description="Compare your network with a zoo model and list every deviation with the paper's "
        "section and why it matters. TARGET is path/to/file.py:ClassOrFunction or package.module:attr; "
        "IMPORTING IT RUNS THAT FILE'S CODE, as running your own script would. Checkpoint, pickle and "
        "TorchScript files are refused: check reads Python source only. Exit status: 0 no deviation, "
        "1 deviations found, 2 usage error.",
    )
    p.add_argument("target", metavar="TARGET", help="path/to/file.py:ClassOrFunction or package.module:attr")
    p.add_argument(
        "--against",
        default="alexnet",
        metavar="NAME",
        help="the zoo model to compare with (default alexnet; see `cnnlab models`)",
    )
    p.add_argument(
        "--kwargs",
        nargs="+",
        type=argtypes.key_value,
        metavar="KEY=VALUE",
        help="arguments for your class or function",
    )
    p.add_argument("--input-size", help="CxHxW of the dummy input (default: the reference's own)")
    p.add_argument("--num-classes", type=int, help="classes of the reference (default: your output width)")
    p.add_argument(
        "--init",
        action="store_true",
        help="also compare initial weight std and biases with the paper's (AlexNet Sec. 5)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=Lazy(RUN, "run_check"))


def run_models(args: argparse.Namespace) -> int:
    """`cnnlab models`: the zoo from the catalogue, without building (or importing torch)."""
    n = args.num_classes
    body = []
    for e in catalog.load():
        quoted = f"{e['quoted']['params']:,}" if e.get("quoted") else ""
        no_aux = f"{catalog.params(e, n, 'params_no_aux'):,}" if "params_no_aux" in e else ""
        body.append([
            e["name"], e["family"], f"{catalog.params(e, n):,}", no_aux, quoted,
            f"{e['in_channels']}x{e['input_size']}x{e['input_size']}", e["paper"],
        ])  # fmt: skip
    header = ["model", "family", f"params ({n} classes)", "w/o aux heads", "10 classes, grey", "input"]
    print(render([*header, "paper"], body, right={2, 3, 4, 5}))
    if any("params_no_aux" in e for e in catalog.load()):
        print(
            "w/o aux heads: GoogLeNet's two auxiliary classifiers (sec. 5) are trained and then dropped; "
            "inference uses the smaller count"
        )
    return 0
