"""The command line: every command's flags, free of torch (`cnnlab --help`, `cnnlab models` and a mistyped
flag answer in a fraction of a second instead of the seconds `import torch` takes), and its body.

Every command lives here, its flags beside its body, two files per group of commands: `X.py` adds the
sub-commands' flags (`register_cli(subparsers)`) and imports no torch; `X_run.py` holds their bodies,
`run_<command>(args) -> int`, and imports whatever the work needs. A command's `func` is a `Lazy`
reference to its body, so `X_run.py` (and torch) is imported only once the arguments have parsed.

    networks.py    models (run here, torch-free), summary, diagram, compare, check  (networks_run.py)
    pictures.py    filters, neighbors, activations, occlusion, gradcam, mistakes, report  (pictures_run.py)
    runs.py        eval, predict, export, data  (runs_run.py)
    train.py       train, its flags generated from cnnlab/settings.py's TrainConfig  (train_run.py)
    reproduce.py   reproduce  (body still in cnnlab.experiments)
    common.py      what several commands share: the data flags, the model-name help
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lazy:
    """`module.function(args)`, the module imported on the first call (after parsing)."""

    module: str
    function: str

    def __call__(self, args: Any) -> int:
        return int(getattr(importlib.import_module(self.module), self.function)(args) or 0)
