"""Checkpoints: plain dicts written atomically, read back with `torch.load(weights_only=True)`.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so loading one never runs code from the
file. It carries everything needed to rebuild the model (name, options, class count, input channels), to
preprocess new images as training did (data stats, augmentation settings, class names) and to resume the
run exactly (optimizer, scheduler, epoch, step, partial-epoch sums, metrics so far).

`save` writes a temporary file in the same folder, flushes and fsyncs it, renames it over the old file with
`os.replace` (atomic on POSIX) and fsyncs the folder, so a run killed at any moment leaves either the old
or the new checkpoint, never a torn one.

torch's zip reader does not check the CRCs its writer stores, so a flipped bit would load silently. `save`
therefore stores a sha256 over the whole checkpoint (every entry, metadata and tensors: `integrity.py`),
and `load` recomputes it before using anything and refuses a mismatch, or a checkpoint without it. Then
`load` checks the whole structure (every key, type, size and value a reader relies on) once, so a
tampered file is one line here, never a traceback in some reader.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import data, integrity, limits, models, outfiles, summary
from cnnlab.device import eval_amp, place
from cnnlab.errors import CnnlabError
from cnnlab.models import user

FORMAT = integrity.FORMAT
FORMAT_VERSION = 1
# Keys every reader relies on; anything without them is not a cnnlab checkpoint.
REQUIRED_KEYS = ("format", "model_name", "model_options", "num_classes", "in_channels", "classes", "model")


# The atomic writer lives in the torch-free `outfiles`; these two names stay only for cnnlab/experiments
# (being rewritten by other work): everything else imports them from `outfiles`.
write_bytes = outfiles.write_bytes
write_text = outfiles.write_text


INTEGRITY_KEY = integrity.KEY


def save(ckpt: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write `ckpt` to `path` atomically, with its tensor digest; a failure raises CnnlabError and keeps
    the old file."""
    # A loaded checkpoint is a dict subclass: save it as a plain dict so it loads with weights_only=True.
    plain = dict(ckpt)
    plain[INTEGRITY_KEY] = integrity.digest(plain)
    outfiles.atomic_write(Path(path), lambda f: torch.save(plain, f))


def copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a checkpoint file atomically (best.pt from last.pt without serialising twice)."""
    with open(src, "rb") as s:
        outfiles.atomic_write(Path(dst), lambda f: shutil.copyfileobj(s, f, 1 << 20))


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a cnnlab checkpoint onto the CPU; missing, corrupt or foreign files raise CnnlabError."""
    p = Path(path)
    if not p.is_file():
        raise CnnlabError(
            f"checkpoint {p} not found (a run keeps them in RUN/checkpoints/last.pt and best.pt)"
        )
    try:
        with warnings.catch_warnings():
            # A legacy (non-zip) file makes torch warn about its format first: our one line says it all.
            warnings.simplefilter("ignore")
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
    integrity.verify(ckpt, p)  # before any of it is used: every entry, metadata too
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

    # A zoo model's switches never name create()'s own arguments; a user's network takes its constructor's
    # arguments (num_classes among them), and is only rebuilt from a file its user names (build_model).
    if not user.is_user_spec(ckpt["model_name"]):
        try:
            models.check_switch_names(options)
        except CnnlabError as exc:
            raise bad(f"model_options: {exc}") from None
    classes = ckpt["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise bad("classes is not a list of names")
    if len(classes) != ckpt["num_classes"]:
        raise bad(f"it names {len(classes)} classes but has num_classes {ckpt['num_classes']}")
    weights = ckpt["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise bad("model is not a dict of tensors")
    for name, t in weights.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise CnnlabError(
                f"checkpoint {p}: weight {name!r} holds NaN or infinite values, so every prediction would "
                "be meaningless; use an earlier checkpoint of the run (best.pt), or retrain"
            )
    for key in ("config", "data_stats", "augment"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise bad(f"{key} is not a dict")
    # The config's data set names the data a reader evaluates on; the rest of it is read (and checked)
    # by `--resume` (training.recipes.from_saved).
    if "config" in ckpt and not (
        isinstance(ckpt["config"].get("dataset"), str) and ckpt["config"]["dataset"]
    ):
        raise bad("its config names no data set")

    # The preprocessing a reader rebuilds must be buildable.
    try:
        if "data_stats" in ckpt:
            _check_stats(data.DataStats.from_dict(ckpt["data_stats"]), int(ckpt["in_channels"]))
        if "augment" in ckpt:
            data.AugmentConfig.from_dict(ckpt["augment"])
    except CnnlabError as exc:
        raise bad(str(exc)) from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise bad(f"its data_stats or augment are unreadable ({type(exc).__name__}: {exc})") from None


def _check_stats(stats: Any, channels: int) -> None:
    """Normalisation statistics a prediction can use: one mean, std and eigenvalue per input channel, a
    [channels, H, W] mean image with pixels, a [channels, channels] eigenvector matrix; finite means and
    standard deviations, none negative.

    A std of exactly 0 is real (a channel constant over the training set, e.g. an unused colour of a
    synthetic set): normalisation divides by max(std, 1e-6) in training and prediction alike.
    """
    shapes = {
        "mean": (stats.mean, (channels,)),
        "std": (stats.std, (channels,)),
        "eigvals": (stats.eigvals, (channels,)),
        "eigvecs": (stats.eigvecs, (channels, channels)),
    }
    for what, (t, shape) in shapes.items():
        if tuple(t.shape) != shape:
            raise CnnlabError(
                f"its data_stats {what} has shape {list(t.shape)}, not {list(shape)} for {channels}-channel "
                "images"
            )
    image = stats.mean_image
    if image.dim() != 3 or image.shape[0] != channels or image.shape[1] < 1 or image.shape[2] < 1:
        raise CnnlabError(f"its data_stats mean image has shape {list(image.shape)}, not [{channels}, H, W]")
    for what, t in (("mean", stats.mean), ("std", stats.std), ("mean image", stats.mean_image)):
        if not bool(torch.isfinite(t).all()):
            raise CnnlabError(f"its data_stats {what} holds NaN or infinite values")
    if bool((stats.std < 0).any()):
        raise CnnlabError(f"its data_stats std {stats.std.tolist()} is negative")


def build_model(ckpt: dict[str, Any], model: str | None = None) -> nn.Module:
    """The checkpoint's network with its weights, in eval mode, on the CPU.

    A zoo model is rebuilt from its name. A network of the user's own (`file.py:Class`) never is: importing
    a file that a checkpoint names would run code chosen by whoever wrote the checkpoint. The caller's own
    command line must name it (`model`, from `--model file.py:Class`).
    """
    name = str(ckpt["model_name"])
    # The checkpoint's own spec is never repeated as advice: copied onto a command line, it would let the
    # file choose the code that runs.
    ask = "pass --model path/to/your_file.py:YourClass, the network file it was trained from"
    if user.is_user_spec(name):
        where = getattr(ckpt, "path", "the checkpoint")
        if not model:
            raise CnnlabError(
                f"{where} holds a network of your own, not one of the zoo's; cnnlab never imports code a "
                f"checkpoint names: {ask}"
            )
        if not user.is_user_spec(model):
            raise CnnlabError(f"--model {model}: {where} holds a network of your own, not a zoo model; {ask}")
        net = user.load_checkpoint_network(model, **dict(ckpt["model_options"]))
    else:
        if model and model != name:
            raise CnnlabError(f"--model {model}: the checkpoint holds the zoo's {name}; drop --model")
        _check_forward_fits(ckpt)
        net = models.create_from(
            name, int(ckpt["num_classes"]), int(ckpt["in_channels"]), ckpt["model_options"]
        )
    load_weights(net, ckpt)
    return net.eval()


def _check_forward_fits(ckpt: dict[str, Any]) -> None:
    """Refuse a checkpoint whose input size makes one image's forward pass too big for this machine
    (a tampered augment.input_size of 10^6, say), measured on the meta device before anything is built."""
    aug = ckpt.get("augment")
    if not isinstance(aug, dict) or not isinstance(aug.get("input_size"), int):
        return
    c, side = int(ckpt["in_channels"]), int(aug["input_size"])
    base = max(side, aug.get("resize") or 0) + 2 * int(aug.get("pad") or 0)
    found = summary.trace_on_meta(
        ckpt["model_name"], int(ckpt["num_classes"]), c, ckpt["model_options"], (c, side, side)
    )
    if found is None:
        return
    if found.error is not None:
        raise CnnlabError(f"checkpoint {getattr(ckpt, 'path', '')}: {found.error}") from None
    need = summary.totals(found.rows).activation_bytes + 4 * c * base * base
    limits.check_fits(
        need,
        f"one {c}x{side}x{side} image through {ckpt['model_name']}",
        "the checkpoint's input size is damaged, or too large for this machine",
    )


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


@dataclass
class Trained:
    """A checkpoint's network ready to use, with the preprocessing its run used on test images."""

    model: nn.Module  # in eval mode, on the device asked for
    stats: Any  # data.DataStats: the run's normalisation
    aug: Any  # data.AugmentConfig: its input size, resizing and crops
    classes: list[str]
    ckpt: dict[str, Any]
    amp: torch.dtype | None = None  # the autocast its numbers are computed under (`device.eval_amp`)


def restore(ckpt: dict[str, Any], device: torch.device | str = "cpu", model: str | None = None) -> Trained:
    """Rebuild what evaluation, prediction and the pictures need from a loaded checkpoint (a part it lacks
    is a one-line CnnlabError naming the part, from `load`'s dict). The net takes the memory format its run
    trained and evaluated in: a channels-last run's checkpoint is evaluated as the run evaluated it (and on
    a CPU several times faster: max-pooling a channels-first tensor is the slow path), under the autocast
    it trained and evaluated in where this device runs that fast (`device.eval_amp`)."""
    config = ckpt.get("config", {})
    return Trained(
        model=place(build_model(ckpt, model), device, bool(config.get("channels_last"))),
        stats=data.DataStats.from_dict(ckpt["data_stats"]),
        aug=data.AugmentConfig.from_dict(ckpt["augment"]),
        classes=list(ckpt["classes"]),
        ckpt=ckpt,
        amp=eval_amp(str(config.get("amp_dtype", "none")), device),
    )
