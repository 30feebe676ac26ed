"""`train(cfg)`: one run from start to finish, for one process, one GPU or many (torchrun); the
function behind the `cnnlab train` command (cnnlab/commands/train_run.py).

    set up (build.build_run)  ->  open the folder  ->  the epochs (loop.Loop)  ->  curves and summary

A signal while the data is read and the model built stops the process at once, with one line and no
traceback; from the first write to the folder on, it waits for the end of a step (signals.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.settings import TrainConfig, asked_of
from cnnlab.training import distributed
from cnnlab.training.build import build_run
from cnnlab.training.loop import Loop
from cnnlab.training.recipes import run_dir_name
from cnnlab.training.runfolder import RunLock
from cnnlab.training.signals import Interrupt, StopRequest


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    model: nn.Module
    config: TrainConfig  # resolved
    stopped: str | None = None  # why the run stopped early ("SIGTERM", "stop_after"), None when complete
    main_process: bool = True  # rank 0 (the only one that writes files)
    # What report.html reuses instead of computing again: the last epoch's test evaluation (epoch, numbers)
    # and the curves.png just drawn.
    measured: tuple[int, dict[str, Any]] | None = None
    curves: bytes | None = None


def train(settings: TrainConfig | Mapping[str, Any], given: Iterable[str] | None = None) -> TrainResult:
    """Train (or resume) one run; the Python API behind `cnnlab train`.

    What the user gave decides: the recipe fills the other settings, and a resumed run refuses to change
    any but the few it may. A mapping is exactly what was given; of a TrainConfig, the settings named in
    `given` (the CLI passes the flags given), or else every setting that differs from its default (so
    `TrainConfig(recipe="fast", amp=False)` leaves amp to the recipe: pass {"recipe": "fast", "amp": False}).
    """
    if isinstance(settings, Mapping):
        asked = dict(settings)
    elif given is None:
        asked = asked_of(settings)
    else:
        asked = {name: getattr(settings, name) for name in given}
    cfg = TrainConfig().replace(**asked)
    if not cfg.resume and not (cfg.model and cfg.dataset):
        raise CnnlabError("--model and --dataset are required (or --resume --out RUN to continue a run)")
    if cfg.resume and not cfg.out and not (cfg.model and cfg.dataset):
        raise CnnlabError("--resume needs the run folder: --out RUN")
    stop, lock = StopRequest(), RunLock()
    again = "run the same command again"
    if cfg.resume:
        again = f"continue with: cnnlab train --out {run_dir_name(cfg)} --resume"
    with stop.installed():
        stop.immediate = True
        ctx: distributed.Context | None = None
        loop: Loop | None = None
        finished = False
        try:
            try:
                ctx = distributed.setup(cfg.device)
                loop = Loop(build_run(asked, ctx, lock), stop, lock)
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
            root, history = loop.run.folder.root, list(loop.history)
            finished = True
            return TrainResult(
                root, history, final, loop.raw, loop.cfg, stopped, ctx.is_main, loop.measured, loop.curves
            )
        finally:
            lock.release()
            if ctx is not None:
                if loop is not None:
                    loop.release_collectives()
                distributed.teardown(ctx, finished)
