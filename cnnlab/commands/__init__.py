"""The command line's flags, free of torch: `cnnlab --help`, `cnnlab models` and a mistyped flag answer
in a fraction of a second instead of the seconds `import torch` takes.

Each module here adds the sub-commands of one part of cnnlab (`register_cli(subparsers)`); a command's
`func` is a `Lazy` reference to the function that runs it, so the module doing the work (and torch) is
imported only once the arguments have parsed.

    inspect.py     models, summary, diagram, compare, check
    pictures.py    filters, neighbors, activations, occlusion, gradcam, mistakes, report
    runs.py        eval, predict, export, data
    reproduce.py   reproduce
    train.py       train (its flags generated from cnnlab/settings.py's TrainConfig)
    common.py      what several commands share: the data flags, the model-name help, devices
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
