"""Networks the user wrote: `path/to/file.py:Name` or `package.module:attr`, built with keyword arguments.

Loading a user's file imports it, which runs its code: that is the point (it is their network, in their
own file, named on their own command line). Nothing here ever loads a checkpoint or any other data file
that could carry code; weights go through `cnnlab.models.pretrained`, which reads tensors only.

Every failure is one `CnnlabError` line: a missing file, an import that raised, a missing attribute (with
the names the file does define), a constructor that raised, or something that is not an `nn.Module`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from cnnlab import argtypes
from cnnlab.errors import CnnlabError, first_line

# One import per file per process: `compare` builds a model twice (count, then timing), and a file's
# module-level code should run once.
_MODULES: dict[Path, ModuleType] = {}


def is_user_spec(name: str) -> bool:
    """True for `file.py:Name` and `pkg.mod:attr`; registered model names never contain a colon."""
    return ":" in name and not name.startswith(":") and not name.endswith(":")


def split_spec(spec: str) -> tuple[str, str]:
    where, _, attr = spec.rpartition(":")
    if not where or not attr or not attr.replace(".", "_").isidentifier():
        raise CnnlabError(
            f"{spec!r} is not a network: write path/to/file.py:ClassName or package.module:attr"
        )
    return where, attr


def parse_kwargs(items: Iterable[str]) -> dict[str, Any]:
    """`key=value` strings as constructor keywords; values are Python literals (10, 0.5, True, 'x',
    (3, 3)) when they parse as one, else the plain string."""
    out: dict[str, Any] = {}
    for item in items:
        try:
            key, text = argtypes.split_key_value(item)
        except argparse.ArgumentTypeError as exc:
            raise CnnlabError(f"--kwargs {exc}") from None
        out[key] = argtypes.literal(text)
    return out


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    if path in _MODULES:
        return _MODULES[path]
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"cnnlab_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CnnlabError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # The file's own folder first on sys.path while it runs, so `import helpers` beside it works.
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # SystemExit (sys.exit at import) and other BaseExceptions too: one line
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CnnlabError(f"importing {path} failed: {_where(exc, path)}") from exc
    finally:
        if sys.path and sys.path[0] == str(path.parent):
            sys.path.pop(0)
    _MODULES[path] = module
    return module


def _where(exc: BaseException, path: Path | None = None) -> str:
    """'TypeError: message (file.py line 12)' for the deepest frame in the user's file."""
    text = first_line(exc) if str(exc).strip() else "(no message)"
    line = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.lineno:
        line = f" ({Path(exc.filename or '?').name} line {exc.lineno})"
    for frame in reversed(frames):
        if path is None or Path(frame.filename).resolve() == path:
            line = f" ({Path(frame.filename).name} line {frame.lineno})"
            break
    return f"{type(exc).__name__}: {text}{line}"


def is_file_spec(where: str) -> bool:
    """The part before the colon names a Python file (not an installed module)."""
    return where.endswith(".py") or "/" in where or "\\" in where


def _module_for(where: str) -> tuple[ModuleType, Path | None]:
    if is_file_spec(where):
        path = Path(where)
        if not path.is_file():
            raise CnnlabError(f"{where}: no such Python file (write path/to/file.py:ClassName)")
        return _import_file(path), path.resolve()
    try:
        return importlib.import_module(where), None
    except ModuleNotFoundError as exc:
        raise CnnlabError(
            f"no module {where!r} ({exc}); give a file path (net.py:AlexNet) or install the package"
        ) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CnnlabError(f"importing {where} failed: {_where(exc)}") from exc


def _candidates(module: ModuleType) -> list[str]:
    """Names a user probably meant: nn.Module classes and functions defined in the module itself."""
    found = []
    for key, value in vars(module).items():
        if key.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if (inspect.isclass(value) and issubclass(value, nn.Module)) or inspect.isfunction(value):
            found.append(key)
    return found


def load_user_model(spec: str, **kwargs: Any) -> nn.Module:
    """Import the file or module of `spec` and build its class or function with `kwargs`.

    `spec` is `path/to/file.py:Name` or `package.module:attr` (dots in Name reach nested attributes).
    A class or function is called with `kwargs`; an `nn.Module` instance is returned as it is. The model is
    on the CPU in training mode, as the constructor left it; `model.source` records `spec`.
    """
    where, attr = split_spec(spec)
    module, path = _module_for(where)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            known = ", ".join(_candidates(module)) or "no nn.Module classes or functions"
            raise CnnlabError(f"{where} has no {attr!r}: it defines {known}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        if kwargs:
            raise CnnlabError(f"{spec} is already a built network: it takes no --kwargs")
        model = obj
    elif callable(obj):
        try:
            model = obj(**kwargs)
        except (Exception, SystemExit) as exc:
            given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise CnnlabError(f"building {attr}({given}) failed: {_where(exc, path)}") from exc
    else:
        raise CnnlabError(f"{spec} is a {type(obj).__name__}, not a network class or function")
    if not isinstance(model, nn.Module):
        raise CnnlabError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    model.source = spec  # type: ignore[assignment]
    return model


def load_checkpoint_network(spec: str, **kwargs: Any) -> nn.Module:
    """The network of a checkpoint of the user's own, rebuilt with the checkpoint's stored options.

    Stricter than `load_user_model`, because the keyword arguments come from a file that may be a
    stranger's: `spec` must be `path/to/file.py:Class`, a file the user names on the command line (never
    an installed module), and `Class` an `nn.Module` subclass defined in that very file (never a function,
    and never something the file imported: `subprocess:run`, `os:system` or `file.py:run` after `from
    subprocess import run` are refused). So a checkpoint can only fill the constructor arguments of the
    user's own network class, never choose what code runs.
    """
    where, attr = split_spec(spec)
    if not is_file_spec(where) or "." in attr:
        raise CnnlabError(
            f"--model {spec}: a checkpoint's network is rebuilt only from a class in a Python file you name "
            "(--model path/to/your_file.py:YourClass), never from an installed module or a nested attribute"
        )
    module, _ = _module_for(where)
    obj = getattr(module, attr, None)
    if not (
        inspect.isclass(obj)
        and issubclass(obj, nn.Module)
        and getattr(obj, "__module__", "") == module.__name__
    ):
        known = ", ".join(
            k for k, v in vars(module).items()
            if inspect.isclass(v) and issubclass(v, nn.Module) and v.__module__ == module.__name__
        ) or "none"  # fmt: skip
        raise CnnlabError(
            f"--model {spec}: {attr!r} is not a torch.nn.Module class defined in {where}, and only such a "
            f"class is built with a checkpoint's options (classes defined there: {known})"
        )
    return load_user_model(spec, **kwargs)
