"""Will it fit? Sizes checked against the memory this machine has, before anything is allocated.

A flag such as `--batch-size 1e9`, a tampered checkpoint announcing a 10^9-wide layer or a data file whose
header claims terabytes would otherwise reach torch's allocator, which aborts with a C++ message (or the
kernel's OOM killer ends the process). Each caller estimates the bytes it is about to allocate and asks
`check_fits`, which refuses with one line saying what needs the memory and how to ask for less.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cnnlab.errors import CnnlabError

if TYPE_CHECKING:
    import torch

# Used when the available memory cannot be read (no /proc, no sysconf): generous, but it still stops
# the absurd requests (terabytes) that only a typo or a tampered file makes.
FALLBACK_BYTES = 64 * 2**30


def available_memory() -> int:
    """Bytes of RAM this process may still use: the smaller of the machine's (`machine_memory`) and what
    the process's own limits leave it (`limit_headroom`: `ulimit -v`, `prlimit --as`)."""
    return min(machine_memory(), limit_headroom())


def limit_headroom() -> int:
    """Bytes the address-space limit (RLIMIT_AS, or RLIMIT_DATA) still allows this process: the limit
    less the virtual memory already mapped (VmSize, or VmData); unlimited: a number larger than any."""
    unlimited = 2**62
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return unlimited
    headroom = unlimited
    for which, field in ((resource.RLIMIT_AS, "VmSize:"), (resource.RLIMIT_DATA, "VmData:")):
        try:
            soft, _ = resource.getrlimit(which)
        except (OSError, ValueError):
            continue
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        headroom = min(headroom, max(0, soft - _status_bytes(field)))
    return headroom


def _status_bytes(field: str) -> int:
    """A size from /proc/self/status (VmSize, VmData) in bytes; 0 when it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def machine_memory() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages from sysconf, else
    FALLBACK_BYTES."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and size > 0:
            return int(pages * size)
    except (ValueError, OSError, AttributeError):
        pass
    return FALLBACK_BYTES


def device_memory(device: str | torch.device = "cpu") -> int:
    """Free bytes on `device`: a CUDA device's free memory, else the RAM available."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    return available_memory()


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def check_fits(nbytes: int | float, what: str, how_to_fix: str, device: str | torch.device = "cpu") -> None:
    """Refuse (CnnlabError, one line) when `what` needs more than the memory free on `device`.

    `nbytes` is the caller's estimate of what it is about to allocate; `what` names it ("a batch of
    1000000000 3x28x28 images") and `how_to_fix` says which flag to lower.
    """
    have = device_memory(device)
    if not nbytes <= have:  # also refuses NaN
        where = "on the GPU" if str(device).startswith("cuda") else "available"
        raise CnnlabError(
            f"{what} needs about {fmt_bytes(nbytes)} of memory but only {fmt_bytes(have)} is {where}; "
            f"{how_to_fix}"
        )


def check_input_batch(batch_size: int, input_size: tuple[int, int, int], device: str | torch.device) -> None:
    """Refuse a float32 input batch [batch_size, C, H, W] that the device cannot hold (meta: anything)."""
    import torch

    if torch.device(device).type == "meta":
        return
    c, h, w = input_size
    check_fits(
        4 * batch_size * c * h * w,
        f"a batch of {batch_size} {c}x{h}x{w} inputs",
        "lower --batch-size or --input-size",
        device,
    )
