"""Which torch device a command runs on (`--device auto|cpu|cuda`)."""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError


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
