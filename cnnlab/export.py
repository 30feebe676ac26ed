"""Export a checkpoint's network for use outside cnnlab: ONNX, TorchScript or safetensors.

Every format takes the normalised input the network saw in training, float32 [N, C, s, s], and gives
logits [N, classes]; the classes and the normalisation (mean/std) travel in the file's metadata.

ONNX: the TorchScript-based exporter (`dynamo=False`) first: about ten times faster than the dynamo
exporter and fine for every model at its native input size. It cannot export an adaptive average pool
whose output size does not divide its input size (a small-image net run on inputs smaller than its
pool's 4x4, say); then the dynamo exporter (`dynamo=True`, opset 18) takes over, which handles it. Both
give a graph with a dynamic batch dimension; the tests check both against PyTorch with onnxruntime.

Every format is serialised in memory and written with the atomic writer (`outfiles.write_bytes`): a full
disk or an unwritable folder is one line and leaves no partial file (TorchScript's own file writer aborts
the process from C++ on a full disk). An existing file is replaced only with `--force`, and never the
checkpoint being exported.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import checkpoint, extras, outfiles
from cnnlab.choices import EXPORT_FORMATS
from cnnlab.errors import CnnlabError

FORMATS = EXPORT_FORMATS
ONNX_OPSET = 17
ONNX_DYNAMO_OPSET = 18  # the dynamo exporter's lowest supported opset


def metadata(ckpt: dict[str, Any]) -> dict[str, str]:
    """What a consumer needs besides the weights, as strings (the only type the formats all hold)."""
    stats = ckpt["data_stats"]
    aug = ckpt["augment"]
    return {
        "cnnlab_model": str(ckpt["model_name"]),
        "model_options": json.dumps(ckpt["model_options"]),
        "num_classes": str(ckpt["num_classes"]),
        "in_channels": str(ckpt["in_channels"]),
        "input_size": str(aug["input_size"]),
        "classes": json.dumps(list(ckpt["classes"])),
        "normalize": str(aug.get("normalize", "channel")),
        "mean": json.dumps(list(stats["mean"])),
        "std": json.dumps(list(stats["std"])),
    }


def example_input(ckpt: dict[str, Any], batch: int = 2) -> torch.Tensor:
    side = int(ckpt["augment"]["input_size"])
    return torch.randn(batch, int(ckpt["in_channels"]), side, side)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hold back what the exporters print (the TorchScript exporter's IR dump when it hands over to the
    dynamo exporter, the dynamo exporter's progress lines: about 80 lines on a success). Python's and C++'s
    output alike go to a temporary file, shown on stderr only when the export fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    text = io.StringIO()
    with tempfile.TemporaryFile() as log:
        failed = False
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace") + text.getvalue())
                sys.stderr.flush()


def _onnx(model: nn.Module, x: torch.Tensor, meta: dict[str, str], dynamo: bool = False) -> bytes:
    with _quiet():
        return _onnx_loud(model, x, meta, dynamo)


def _onnx_loud(model: nn.Module, x: torch.Tensor, meta: dict[str, str], dynamo: bool = False) -> bytes:
    import onnx

    names: dict[str, Any] = {"input_names": ["images"], "output_names": ["logits"]}
    proto = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and fallback notices
        if not dynamo:
            buf = io.BytesIO()
            target: Any = buf  # a file object works, though torch's annotation names only paths
            try:
                torch.onnx.export(
                    model, (x,), target, dynamo=False, opset_version=ONNX_OPSET,
                    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, **names,
                )  # fmt: skip
                proto = onnx.load_from_string(buf.getvalue())
            except torch.onnx.errors.OnnxExporterError:
                dynamo = True
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(
                model, (x,), None, dynamo=True, opset_version=ONNX_DYNAMO_OPSET,
                dynamic_shapes=({0: batch},), **names,
            )  # fmt: skip
            assert program is not None
            proto = program.model_proto
    assert proto is not None
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def _torchscript(model: nn.Module, x: torch.Tensor, meta: dict[str, str]) -> bytes:
    # TorchScript is deprecated in favour of torch.export but still what C++ (libtorch) users load.
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x, check_trace=True)
        torch.jit.save(traced, buf, _extra_files={"cnnlab.json": json.dumps(meta)})
    return buf.getvalue()


def _safetensors(model: nn.Module, meta: dict[str, str]) -> bytes:
    from safetensors.torch import save

    # safetensors refuses shared or strided storage: give each tensor its own contiguous copy.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return bytes(save(state, metadata=meta))


def check_output(out: str, ckpt_path: str, force: bool, model_spec: str | None = None) -> Path:
    """The path `-o` names, when export may write it: an existing file only with `force`, never the
    checkpoint itself (nor the network file of `model_spec`), nor a folder or a device."""
    if not str(out).strip():
        raise CnnlabError("-o is empty; name the file to write, e.g. -o model.onnx")
    path = Path(out)
    if path.is_dir():
        raise CnnlabError(f"{path} is a folder; -o names the file to write (e.g. {path / 'model.onnx'})")
    if os.path.lexists(path):
        try:
            same = path.resolve() == Path(ckpt_path).resolve() or os.path.samefile(path, ckpt_path)
        except OSError:
            same = False
        if same:
            raise CnnlabError(
                f"-o {path} is the checkpoint being exported; refusing to overwrite it (even with --force): "
                "choose another -o"
            )
        if not force:
            raise CnnlabError(f"{path} already exists; choose another -o, or pass --force to replace it")
    # The rule of every command that writes; its folder is created when missing, unless a file is in the way.
    return outfiles.check_output(path, "-o", force, _inputs(ckpt_path, model_spec))


def _inputs(ckpt_path: str, model_spec: str | None) -> list[str]:
    return [ckpt_path, *([model_spec.rpartition(":")[0]] if model_spec and ":" in model_spec else [])]


def input_shape(ckpt: dict[str, Any]) -> str:
    """The exported network's input, e.g. "[N, 1, 28, 28]" (N: any batch)."""
    side = int(ckpt["augment"]["input_size"])
    return f"[N, {int(ckpt['in_channels'])}, {side}, {side}]"


def export(ckpt_path: str, fmt: str, out: str, force: bool = False, model_spec: str | None = None) -> Path:
    """Write the checkpoint's network to `out` in format `fmt` (its folder created if missing); returns
    the path written.

    An existing `out` is refused unless `force`; the checkpoint itself is never overwritten. A run of your
    own network needs `model_spec` (its --model FILE.py:CLASS).
    """
    return export_checkpoint(ckpt_path, fmt, out, force, model_spec)[0]


def export_checkpoint(
    ckpt_path: str, fmt: str, out: str, force: bool, model_spec: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """`export`, returning the checkpoint it read too (the command describes the file's input and output)."""
    if fmt not in FORMATS:
        raise CnnlabError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        extras.require("export --format onnx", "onnx", "onnxscript")
    path = check_output(out, ckpt_path, force, model_spec)
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.build_model(ckpt, model_spec)
    meta = metadata(ckpt)
    x = example_input(ckpt)
    with torch.no_grad():
        if fmt == "onnx":
            blob = _onnx(model, x, meta)
        elif fmt == "torchscript":
            blob = _torchscript(model, x, meta)
        else:
            blob = _safetensors(model, meta)
    # Checked again: the file may have appeared while the model was exported.
    check_output(out, ckpt_path, force, model_spec)
    # A temporary file beside the target, renamed over it: a failed write never leaves a partial file.
    outfiles.write_file(path, blob, "-o", force, _inputs(ckpt_path, model_spec))
    return path, ckpt
