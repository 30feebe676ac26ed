"""Checkpoints: plain dicts written atomically, read back with `torch.load(weights_only=True)`.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so loading one never runs code from the
file. It carries everything needed to rebuild the model (name, options, class count, input channels), to
preprocess new images as training did (data stats, augmentation settings, class names) and to resume the
run exactly (optimizer, scheduler, epoch, step, partial-epoch sums, metrics so far).

`save` writes a temporary file in the same folder, flushes and fsyncs it, renames it over the old file with
`os.replace` (atomic on POSIX) and fsyncs the folder, so a run killed at any moment leaves either the old
or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError

FORMAT = "cnnlab-checkpoint"
FORMAT_VERSION = 1
# Keys every reader relies on; anything without them is not a cnnlab checkpoint.
REQUIRED_KEYS = ("format", "model_name", "model_options", "num_classes", "in_channels", "classes", "model")


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some file systems do not allow opening a folder, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, write: Any) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # the temporary file goes whatever the failure, even Ctrl-C
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = _os_error(exc)
        if cause is None:
            raise
        reason = cause.strerror or str(cause)
        raise CnnlabError(
            f"could not write {path}: {reason}; the previous file there is intact "
            "(free some space or choose another --out, then --resume)"
        ) from exc
    _fsync_dir(path.parent)


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`, if any: torch.save reports a write that failed part-way (a full disk)
    as a RuntimeError of its zip writer, with the OSError as its context."""
    seen: BaseException | None = exc
    for _ in range(16):  # a bounded walk: exception chains can loop
        if not isinstance(seen, Exception):
            return None
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def save(ckpt: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write `ckpt` to `path` atomically; a failure raises CnnlabError and keeps the old file."""
    # A loaded checkpoint is a dict subclass: save it as a plain dict so it loads with weights_only=True.
    plain = dict(ckpt)
    _atomic_write(Path(path), lambda f: torch.save(plain, f))


def copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a checkpoint file atomically (best.pt from last.pt without serialising twice)."""
    with open(src, "rb") as s:
        _atomic_write(Path(dst), lambda f: shutil.copyfileobj(s, f, 1 << 20))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomic file write for the run folder's other files (config.json, metrics.csv, plots)."""
    _atomic_write(Path(path), lambda f: f.write(data))


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode())


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a cnnlab checkpoint onto the CPU; missing, corrupt or foreign files raise CnnlabError."""
    p = Path(path)
    if not p.is_file():
        raise CnnlabError(
            f"checkpoint {p} not found (a run keeps them in RUN/checkpoints/last.pt and best.pt)"
        )
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own text advises weights_only=False, exactly what a file from a stranger must not get.
        text = " ".join(str(exc).split())
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", text)
        what = f"refers to {found.group(1)}" if found else "holds more than tensors and plain data"
        raise CnnlabError(
            f"cannot read checkpoint {p}: it {what}, which a cnnlab checkpoint never does; refused without "
            "running it (the file is corrupt, from another tool, or malicious)"
        ) from None
    except Exception as exc:  # any other malformed file: torch raises RuntimeError, EOFError, IndexError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"cannot read checkpoint {p} ({first}); it is corrupt or not a torch file") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CnnlabError(f"{p} is not a cnnlab checkpoint (write one with `cnnlab train`)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CnnlabError(f"checkpoint {p} lacks {', '.join(missing)}; it is damaged or from another tool")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CnnlabError(f"checkpoint {p} has a format_version of {version!r}; it is damaged")
    if version > FORMAT_VERSION:
        raise CnnlabError(f"checkpoint {p} was written by a newer cnnlab; upgrade cnnlab to read it")
    _check_fields(ckpt, p)
    return _Checkpoint(ckpt, path=p)


class _Checkpoint(dict[str, Any]):
    """The loaded dict; a reader asking for a part it lacks gets a CnnlabError instead of a KeyError."""

    def __init__(self, d: dict[str, Any], path: Path) -> None:
        super().__init__(d)
        self.path = path

    def __missing__(self, key: str) -> Any:
        raise CnnlabError(f"checkpoint {self.path} has no {key!r}; it is damaged or from another tool")


def _check_fields(ckpt: dict[str, Any], p: Path) -> None:
    """Values of the wrong type or shape are refused here, once, not as a traceback in some reader."""

    def bad(what: str) -> CnnlabError:
        return CnnlabError(f"checkpoint {p}: {what}; it is damaged or from another tool")

    for key in ("num_classes", "in_channels"):
        value = ckpt[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad(f"{key} is {value!r}, not a positive whole number")
    if not isinstance(ckpt["model_name"], str):
        raise bad("model_name is not a string")
    options = ckpt["model_options"]
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise bad("model_options is not a dict of named switches")
    classes = ckpt["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise bad("classes is not a list of names")
    if len(classes) != ckpt["num_classes"]:
        raise bad(f"it names {len(classes)} classes but has num_classes {ckpt['num_classes']}")
    weights = ckpt["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise bad("model is not a dict of tensors")
    for key in ("config", "data_stats", "augment"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise bad(f"{key} is not a dict")
    from cnnlab import data  # the preprocessing a reader rebuilds must be buildable

    try:
        if "data_stats" in ckpt:
            data.DataStats.from_dict(ckpt["data_stats"])
        if "augment" in ckpt:
            data.AugmentConfig.from_dict(ckpt["augment"])
    except CnnlabError as exc:
        raise bad(str(exc)) from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise bad(f"its data_stats or augment are unreadable ({type(exc).__name__}: {exc})") from None


def build_model(ckpt: dict[str, Any], model: str | None = None) -> nn.Module:
    """The checkpoint's network with its weights, in eval mode, on the CPU.

    A zoo model is rebuilt from its name. A network of the user's own (`file.py:Class`) never is: importing
    a file that a checkpoint names would run code chosen by whoever wrote the checkpoint. The caller's own
    command line must name it (`model`, from `--model file.py:Class`).
    """
    from cnnlab import models
    from cnnlab.models import user

    name = str(ckpt["model_name"])
    if user.is_user_spec(name):
        if not model:
            where = getattr(ckpt, "path", "the checkpoint")
            raise CnnlabError(
                f"{where} holds your own network {name}; cnnlab never imports code a checkpoint names: "
                f"pass --model {name} (the same file) to rebuild it"
            )
        if not user.is_user_spec(model):
            raise CnnlabError(
                f"--model {model}: the checkpoint holds your own network {name}; pass --model {name}"
            )
        net = user.load_user_model(model, **dict(ckpt["model_options"]))
    else:
        if model and model != name:
            raise CnnlabError(f"--model {model}: the checkpoint holds the zoo's {name}; drop --model")
        net = models.create(
            name, num_classes=int(ckpt["num_classes"]), in_channels=int(ckpt["in_channels"]),
            **dict(ckpt["model_options"]),
        )  # fmt: skip
    load_weights(net, ckpt)
    return net.eval()


def load_weights(model: nn.Module, ckpt: dict[str, Any]) -> None:
    """Copy the checkpoint's weights into `model`; weights of another shape are a CnnlabError."""
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:  # the latter two: weights that are not tensors
        # torch's message: "Error(s) in loading state_dict for X:" then one line per mismatch.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        raise CnnlabError(
            f"checkpoint weights do not fit model {ckpt['model_name']!r} ({' '.join(lines[:2])}); "
            "was it written by another cnnlab version?"
        ) from exc


def describe(ckpt: dict[str, Any]) -> str:
    """One line naming a checkpoint's model, classes and progress, for messages."""
    return (
        f"{ckpt['model_name']} with {ckpt['num_classes']} classes "
        f"(epoch {ckpt.get('epoch', '?')}, step {ckpt.get('step', '?')})"
    )
