"""The optional Python packages: which extra of `pip install 'cnnlab[...]'` brings each, and one check that
turns a missing one into a one-line error naming the pip command.

The core install (`pip install cnnlab`) trains, evaluates, predicts, summarises and draws pictures; these
commands need more: `diagram` (torchview and the graphviz bindings), `export --format onnx` (onnx and
onnxscript, the exporter torch uses), TensorBoard events in a run folder (tensorboard). pyproject.toml's
[project.optional-dependencies] lists the same packages (tests/test_packaging.py checks they agree).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cnnlab.errors import CnnlabError

# import name -> the extra that installs it
EXTRA = {
    "torchview": "diagram",
    "graphviz": "diagram",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "tensorboard": "tensorboard",
}


def pip_command(module: str) -> str:
    return f"pip install 'cnnlab[{EXTRA[module]}]'"


def missing(*modules: str) -> str | None:
    """The first of `modules` that cannot be imported, or None when all can."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            # torchview without graphviz fails on graphviz: name the package actually missing.
            return exc.name if exc.name in EXTRA else name
    return None


def require(what: str, *modules: str) -> ModuleType:
    """Import each of `modules` (returning the first) or stop with one line: what needs it and the pip
    command that installs it."""
    absent = missing(*modules)
    if absent is not None:
        raise CnnlabError(
            f"{what} needs the Python package {absent}, which is not installed: {pip_command(absent)}"
        )
    return importlib.import_module(modules[0])
