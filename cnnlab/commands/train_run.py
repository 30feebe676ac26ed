"""The body of `cnnlab train` (its flags: train.py, generated from cnnlab/settings.py): train the run, then
draw its report.html. The page is drawn here, on top of both training and pictures (training never
imports the pictures layer). This module imports torch; train.py reaches it through `Lazy` once the
arguments have parsed."""

from __future__ import annotations

import argparse
import signal
import sys

from cnnlab.errors import CnnlabError
from cnnlab.pictures.runpage import write_report
from cnnlab.settings import asked_from_args
from cnnlab.training.main import TrainResult, train
from cnnlab.training.signals import StoppedBeforeStart


def run_train(args: argparse.Namespace) -> int:
    asked = asked_from_args(args)
    try:
        result = train(asked)
    except StoppedBeforeStart as exc:
        print(f"cnnlab: {exc}", file=sys.stderr)
        return 128 + int(getattr(signal, exc.signal_name))
    if result.stopped in ("SIGINT", "SIGTERM"):
        return 128 + int(getattr(signal, result.stopped))
    if result.stopped is None and result.config.report and result.main_process and result.history:
        write_page(result)
    return 0


def write_page(result: TrainResult) -> None:
    """report.html, the run on one page; a run is complete without it, so a failure to draw it is said in
    one line, not raised. From Python, call `cnnlab.pictures.runpage.write_report(result.run_dir)`."""
    quiet = result.config.progress == "none"

    def say(line: str) -> None:  # what the page spends its time on, as it happens
        if not quiet:
            print(line, flush=True)

    say("report: drawing report.html (curves, kernels, confusion matrix, mistakes, nearest neighbours, "
        "Grad-CAM); the run is complete, --no-report skips this")  # fmt: skip
    try:
        page = write_report(
            result.run_dir,
            device=result.config.device,
            say=say,
            measured=result.measured,
            curves=result.curves,
        )
    except CnnlabError as exc:
        print(f"report.html not written: {exc}", flush=True)
        return
    print(f"report: {page}", flush=True)
