"""`train(cfg)`: one run from start to finish, for one process, one GPU or many (torchrun); and the
function behind the `cnnlab train` command (its flags: command.py).

    set up (setup.build_run)  ->  open the folder  ->  the epochs (loop.Loop)  ->  curves and summary

A signal while the data is read and the model built stops the process at once, with one line and no
traceback; from the first write to the folder on, it waits for the end of a step (signals.py).
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.training import distributed
from cnnlab.training.config import RunConfig, TrainConfig, from_args, given_fields
from cnnlab.training.loop import Loop
from cnnlab.training.recipes import run_dir_name
from cnnlab.training.runfolder import RunLock
from cnnlab.training.setup import build_run
from cnnlab.training.signals import Interrupt, StoppedBeforeStart, StopRequest


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    model: nn.Module
    config: RunConfig
    stopped: str | None = None  # why the run stopped early ("SIGTERM", "stop_after"), None when complete


def train(cfg: TrainConfig, given: set[str] | None = None) -> TrainResult:
    """Train (or resume) one run; the Python API behind `cnnlab train`.

    `given` names the settings the user chose (the CLI passes the flags given); a resumed run refuses
    to change any other. From Python, every field differing from TrainConfig's default counts as given.
    """
    if not cfg.resume and not (cfg.model and cfg.dataset):
        raise CnnlabError("--model and --dataset are required (or --resume --out RUN to continue a run)")
    if cfg.resume and not cfg.out and not (cfg.model and cfg.dataset):
        raise CnnlabError("--resume needs the run folder: --out RUN")
    given = given_fields(cfg) if given is None else given
    stop, lock = StopRequest(), RunLock()
    again = "run the same command again"
    if cfg.resume:
        again = f"continue with: cnnlab train --out {run_dir_name(cfg)} --resume"
    with stop.installed():
        stop.immediate = True
        ctx: distributed.Context | None = None
        try:
            try:
                ctx = distributed.setup(cfg.device)
                loop = Loop(build_run(cfg, given, ctx, lock), stop, lock)
                stop.immediate = False
            except Interrupt:
                raise stop.before_start("nothing was written", again) from None
            loop.open_folder()
            if stop.signal_name is not None and not loop.complete:
                raise stop.before_start("nothing to save", again)
            if loop.complete:
                stopped = None
                loop.say(f"{loop.run.folder.root} is complete ({loop.cfg.epochs} epochs); "
                         "pass a larger --epochs to continue it")  # fmt: skip
            else:
                stopped = loop.run_epochs()
            final = loop.finish(stopped)
            return TrainResult(loop.run.folder.root, list(loop.history), final, loop.raw, loop.cfg, stopped)
        finally:
            lock.release()
            if ctx is not None:
                distributed.teardown(ctx)


def _cmd_train(args: Any) -> int:
    cfg, given = from_args(args)
    try:
        result = train(cfg, given)
    except StoppedBeforeStart as exc:
        print(f"cnnlab: {exc}", file=sys.stderr)
        return 128 + int(getattr(signal, exc.signal_name))
    if result.stopped in ("SIGINT", "SIGTERM"):
        return 128 + int(getattr(signal, result.stopped))
    return 0
