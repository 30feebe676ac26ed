"""Which torch device a command runs on (`--device auto|cpu|cuda`), a net placed on it, and mixed precision
on it."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from cnnlab.errors import CnnlabError


def place(model: torch.nn.Module, device: torch.device | str, channels_last: bool) -> torch.nn.Module:
    """A net on `device`, in the memory format its run trains and evaluates in (`--channels-last`)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto: the GPU when torch sees one, else the CPU; cuda: GPU `local_rank` (modulo the count)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CnnlabError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "cpu":
        return torch.device("cpu")
    raise CnnlabError(f"unknown --device {name!r}; use auto, cpu or cuda")


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(name: str) -> torch.dtype | None:
    """The autocast type of a run's amp_dtype setting ("none", "bf16" or "fp16")."""
    return AMP_DTYPES.get(name)


def fast_amp_dtype(device_type: str) -> str:
    """The mixed precision that makes training faster on this device, or "none": fp16 on CUDA (with loss
    scaling); bf16 on CPUs with bf16 dot-product instructions (AVX512-BF16 or AMX), where oneDNN's bf16
    convolutions run about 1.7x faster than fp32 (docs/training.md); without them bf16 is emulated, slower."""
    if device_type == "cuda":
        return "fp16"
    if device_type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "bf16"
    return "none"


def eval_amp(run_amp_dtype: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast type a run's net is evaluated under, by the trainer and by every command that restores
    its checkpoint: the type it trained in (`amp_dtype`) where this device runs it fast, else None (fp32).
    One checkpoint, one number: the trainer's evaluation and `cnnlab eval`'s agree on the same device, and
    the demo's bf16 evaluation takes a third of the fp32 one's time (bench/eval_precision.py)."""
    device_type = torch.device(device).type
    fast = run_amp_dtype != "none" and fast_amp_dtype(device_type) == run_amp_dtype
    return amp_dtype(run_amp_dtype) if fast else None


def precision_words(dtype: torch.dtype | None) -> str:
    """How a number was computed: "fp32", "bf16 autocast" or "fp16 autocast"."""
    names = {v: k for k, v in AMP_DTYPES.items()}
    return "fp32" if dtype is None else f"{names[dtype]} autocast"


def autocast(dtype: torch.dtype | None, device_type: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision in `dtype` on the device, or nothing when `dtype` is None."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device_type, dtype=dtype)
