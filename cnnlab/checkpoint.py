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
import shutil
import zipfile
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
    _atomic_write(Path(path), lambda f: torch.save(ckpt, f))


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
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"cannot read checkpoint {p} ({first}); it is corrupt or not a torch file") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CnnlabError(f"{p} is not a cnnlab checkpoint (write one with `cnnlab train`)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CnnlabError(f"checkpoint {p} lacks {', '.join(missing)}; it is damaged or from another tool")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CnnlabError(f"checkpoint {p} was written by a newer cnnlab; upgrade cnnlab to read it")
    return ckpt


def build_model(ckpt: dict[str, Any]) -> nn.Module:
    """The checkpoint's network with its weights, in eval mode, on the CPU."""
    from cnnlab import models

    model = models.create(
        ckpt["model_name"],
        num_classes=int(ckpt["num_classes"]),
        in_channels=int(ckpt["in_channels"]),
        **dict(ckpt["model_options"]),
    )
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CnnlabError(
            f"checkpoint weights do not fit model {ckpt['model_name']!r} "
            f"({str(exc).splitlines()[0]}); was it written by another cnnlab version?"
        ) from exc
    return model.eval()


def describe(ckpt: dict[str, Any]) -> str:
    """One line naming a checkpoint's model, classes and progress, for messages."""
    return (
        f"{ckpt['model_name']} with {ckpt['num_classes']} classes "
        f"(epoch {ckpt.get('epoch', '?')}, step {ckpt.get('step', '?')})"
    )
