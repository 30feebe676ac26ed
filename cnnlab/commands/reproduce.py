"""Flags of `cnnlab reproduce`. The claim and budget names are spelled out here, torch-free; a test keeps
them equal to cnnlab.experiments.CLAIM_MODULES and cnnlab.experiments.budget.BUDGETS."""

from __future__ import annotations

from typing import Any

from cnnlab import argtypes
from cnnlab.choices import DEVICES
from cnnlab.commands import Lazy

CLAIMS = (
    "relu-vs-tanh", "lrn", "overlapping-pooling", "pca-lighting", "dropout", "ten-crop", "ensemble",
    "paper-init",
)  # fmt: skip
BUDGETS = ("tiny", "small", "medium", "full")


def register_cli(sub: Any) -> None:
    claims = ", ".join(CLAIMS)
    p = sub.add_parser(
        "reproduce",
        help="run one of the paper's claims (or all) and report the paper's number, ours and a verdict",
        description="Reproduce a claim of the AlexNet paper at a scale this machine affords. Writes "
        "report.md (the paper's protocol and our departures from it, the paper's number, ours with a 95% "
        "confidence interval over paired seeds, a verdict), its plots "
        f"and result.json into --out; `all` adds index.md. Claims: {claims}.",
    )
    p.add_argument("claim", choices=[*CLAIMS, "all"], metavar="CLAIM", help=f"one of {claims}, or all")
    p.add_argument(
        "--budget",
        default="small",
        choices=BUDGETS,
        help="tiny: a smoke test (seconds; its numbers mean nothing, no verdicts); small: ~30 minutes on a "
        "2-core CPU for all (default); medium: ~2 hours on a CPU; full: a GPU or a long run",
    )
    p.add_argument(
        "--dataset", metavar="NAME", help="data set (default: digits for tiny, else fashion-mnist)"
    )
    p.add_argument(
        "--seeds", type=argtypes.positive, metavar="N", help="seeds per arm (default: the budget's)"
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
    p.set_defaults(func=Lazy("cnnlab.experiments", "_cmd_reproduce"))
