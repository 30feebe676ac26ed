"""Distributed data parallel as a mode of the ordinary training loop (the nanoGPT way).

`torchrun --nproc_per_node=N -m cnnlab train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
variables; `setup` sees them and joins the process group (gloo on the CPU, nccl on GPUs). Without them
the same code runs as one process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from cnnlab.collective import all_reduce_sum, any_rank
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError

T = TypeVar("T")
# The collectives the loop calls, from the module evaluation shares (cnnlab/collective.py).
__all__ = ["Context", "all_reduce_sum", "any_rank", "on_main", "setup", "teardown"]


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> Context:
    """Join the process group when launched by torchrun; otherwise a one-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # nccl for GPUs; gloo is the CPU backend (and the only one that runs everywhere).
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown(ctx: Context, finished: bool = False) -> None:
    """Leave the process group. After a run that `finished` on every rank, all ranks meet first: a rank that
    destroyed the group while another still used it was seen to die with SIGABRT (gloo's connection
    closed under it). After an error there is no meeting, which a rank stuck elsewhere would never join."""
    if ctx.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def on_main(ctx: Context, fn: Callable[[], T]) -> T | None:
    """Run `fn` on rank 0 only; a CnnlabError it raises is raised on every rank, so none waits forever."""
    result: T | None = None
    message: list[Any] = [None]
    if ctx.is_main:
        try:
            result = fn()
        except CnnlabError as exc:
            message[0] = str(exc)
    if ctx.distributed:
        dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise CnnlabError(message[0])
    return result
