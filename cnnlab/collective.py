"""Collectives over the ranks of a torchrun job, no-ops in one process: the helpers that evaluation and
training share (training/distributed.py joins and leaves the process group)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    """Whether this process is one of several ranks of a joined process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op on one process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any of them (a stop request, a non-finite loss)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
