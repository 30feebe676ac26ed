"""Export a checkpoint's network for use outside cnnlab: ONNX, TorchScript or safetensors.

Every format takes the normalised input the network saw in training, float32 [N, C, s, s], and gives
logits [N, classes]; the classes and the normalisation (mean/std) travel in the file's metadata.

ONNX: the TorchScript-based exporter (`dynamo=False`) first: about ten times faster than the dynamo
exporter and fine for every model at its native input size. It cannot export an adaptive average pool
whose output size does not divide its input size (a small-image net run on inputs smaller than its
pool's 4x4, say); then the dynamo exporter (`dynamo=True`, opset 18) takes over, which handles it. Both
give a graph with a dynamic batch dimension; the tests check both against PyTorch with onnxruntime.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import checkpoint
from cnnlab.errors import CnnlabError

FORMATS = ("onnx", "torchscript", "safetensors")
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


def _onnx(model: nn.Module, x: torch.Tensor, path: Path, meta: dict[str, str], dynamo: bool = False) -> None:
    import onnx

    names: dict[str, Any] = {"input_names": ["images"], "output_names": ["logits"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and fallback notices
        if not dynamo:
            try:
                torch.onnx.export(
                    model, (x,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, **names,
                )  # fmt: skip
            except torch.onnx.errors.OnnxExporterError:
                dynamo = True
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(
                model, (x,), str(path), dynamo=True, opset_version=ONNX_DYNAMO_OPSET,
                dynamic_shapes=({0: batch},), external_data=False, **names,
            )  # fmt: skip
    proto = onnx.load(str(path))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _torchscript(model: nn.Module, x: torch.Tensor, path: Path, meta: dict[str, str]) -> None:
    # TorchScript is deprecated in favour of torch.export but still what C++ (libtorch) users load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x, check_trace=True)
        torch.jit.save(traced, str(path), _extra_files={"cnnlab.json": json.dumps(meta)})


def _safetensors(model: nn.Module, path: Path, meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    # safetensors refuses shared or strided storage: give each tensor its own contiguous copy.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=meta)


def export(ckpt_path: str, fmt: str, out: str, model_spec: str | None = None) -> Path:
    """Write the checkpoint's network to `out` in format `fmt`; returns the path written."""
    if fmt not in FORMATS:
        raise CnnlabError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.build_model(ckpt, model_spec)
    path = Path(out)
    if path.parent and not path.parent.exists():
        raise CnnlabError(f"folder {path.parent} does not exist; create it or choose another -o")
    meta = metadata(ckpt)
    x = example_input(ckpt)
    # Write beside the target and rename, so a failed export never leaves a truncated file behind.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with torch.no_grad():
            if fmt == "onnx":
                _onnx(model, x, tmp, meta)
            elif fmt == "torchscript":
                _torchscript(model, x, tmp, meta)
            else:
                _safetensors(model, tmp, meta)
        os.replace(tmp, path)
    except OSError as exc:
        raise CnnlabError(f"cannot write {path} ({exc.strerror}); choose another -o") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _cmd_export(args: Any) -> int:
    path = export(args.checkpoint, args.format, args.output, args.model)
    print(
        f"wrote {path} ({args.format}, {path.stat().st_size / 1e6:.1f} MB): input float32 "
        "[N, C, s, s] normalised as in training, output logits; classes and mean/std in its metadata"
    )
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX, TorchScript or safetensors",
        description="Export a checkpoint's network (eval mode) for other runtimes.",
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file (RUN/checkpoints/best.pt)")
    p.add_argument("--format", required=True, choices=FORMATS, help="output format")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    p.add_argument(
        "--model",
        metavar="FILE.py:CLASS",
        help="the network of a run trained with --model FILE.py:CLASS (the same file; importing it runs it)",
    )
    p.set_defaults(func=_cmd_export)
