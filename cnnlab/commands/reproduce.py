"""Flags of `cnnlab reproduce`. The claim, group and budget names are spelled out here, torch-free; a test
keeps them equal to cnnlab.experiments.paper.CLAIMS, cnnlab.experiments.GROUPS and
cnnlab.experiments.budget.BUDGETS."""

from __future__ import annotations

from typing import Any

from cnnlab import argtypes
from cnnlab.choices import DEVICES
from cnnlab.commands import Lazy

# Each paper's claims; `all` runs the AlexNet paper's, `all-vgg` and `all-googlenet` the successors'.
GROUPS = {
    "all": (
        "relu-vs-tanh", "lrn", "overlapping-pooling", "pca-lighting", "dropout", "ten-crop", "ensemble",
        "paper-init",
    ),
    "all-vgg": ("vgg-small-filters", "vgg-cost", "vgg-depth", "vgg-lrn"),
    "all-googlenet": ("googlenet-cost", "googlenet-reductions", "googlenet-aux"),
}  # fmt: skip
CLAIMS = tuple(c for group in GROUPS.values() for c in group)
# Counted exactly, without training (--budget, --seeds and the training flags do not apply).
COMPUTED = ("vgg-small-filters", "vgg-cost", "googlenet-cost", "googlenet-reductions")
BUDGETS = ("tiny", "small", "medium", "full")


def register_cli(sub: Any) -> None:
    claims = "; ".join(f"{group}: {', '.join(names)}" for group, names in GROUPS.items())
    p = sub.add_parser(
        "reproduce",
        help="run one of the papers' claims (or a paper's all) and report the paper's number, ours and a "
        "verdict",
        description="Reproduce a claim of the AlexNet, VGG or GoogLeNet paper at a scale this machine "
        "affords. A trained claim writes report.md (the paper's protocol and our departures from it, the "
        "paper's number, ours with a 95% confidence interval over paired seeds, a verdict), its plots "
        "and result.json into --out; `all` (the AlexNet paper's claims), `all-vgg` and `all-googlenet` "
        f"add index.md. Computed claims ({', '.join(COMPUTED)}) count exactly, without training, print "
        f"at once and write report.md only with --out. Claims by paper: {claims}.",
    )
    p.add_argument(
        "claim",
        choices=[*CLAIMS, *GROUPS],
        metavar="CLAIM",
        help=f"a claim, or all, all-vgg, all-googlenet ({claims})",
    )
    p.add_argument(
        "--budget",
        default="medium",
        choices=BUDGETS,
        help="tiny: a smoke test (seconds; its numbers mean nothing, no verdicts); small: a quick look, ~10 "
        "minutes for all on a 2-core CPU, nets early in training; medium (default): trained nets (the "
        "standard baseline under 12%% test error), 40 minutes for all on a 2-core CPU; full: a GPU or a long "
        "run",
    )
    _add_run_flags(p)
    p.set_defaults(func=Lazy("cnnlab.commands.reproduce_run", "run_reproduce"))


def _add_run_flags(p: Any) -> None:
    """What the trained claims' runs take: data, seeds, folders, model, device, progress."""
    p.add_argument(
        "--dataset", metavar="NAME", help="data set (default: digits for tiny, else fashion-mnist)"
    )
    p.add_argument(
        "--seeds", type=argtypes.positive, metavar="N", help="seeds per arm (default: the budget's)"
    )
    p.add_argument(
        "--seed-start",
        type=argtypes.non_negative,
        default=0,
        metavar="N",
        help="the paired seeds are N, N+1, ... (default 0); a disjoint set (e.g. 100) replicates a table",
    )
    p.add_argument("--out", metavar="DIR", help="report folder (default runs/reproduce-BUDGET[/CLAIM])")
    p.add_argument(
        "--runs", metavar="DIR", help="run folders (default OUT/runs); claims sharing one reuse common runs"
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="model of the AlexNet-family claims (default alexnet_small; alexnet for full on a GPU); "
        "relu-vs-tanh always trains figure1_net, Figure 1's net",
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--data-dir", metavar="DIR", help="folder holding the data set's files")
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch a missing data set through torchvision (needs a network)",
    )
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="folder data sets: skip unreadable image files (and list them) instead of stopping",
    )
    p.add_argument(
        "--progress",
        default="none",
        choices=("none", "lines", "bar"),
        help="training progress of each run (default none: one line per finished run)",
    )
    p.add_argument("--fresh", action="store_true", help="retrain runs already finished in --out")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into an --out that reproduce did not make, replacing files",
    )
