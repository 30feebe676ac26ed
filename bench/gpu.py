"""GPU benchmarks: AlexNet training steps (bf16 + channels-last + compile against eager fp32), the model
FLOP utilisation against a matmul rate measured on the same device, and Fashion-MNIST time to 94%.

Needs a CUDA device; without one it says so and exits with status 2 (bench/run.sh then leaves the GPU
section of BENCHMARKS.md marked "not measured").

    python -m bench.gpu [--quick] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench import common, plain

NO_CUDA = (
    "bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); run it on a machine with a GPU"
)


def matmul_rate(device: str, dtype: torch.dtype, n: int, reps: int) -> float:
    """Dense matmul FLOP/s on this device: the ceiling the model's utilisation is measured against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, fast: bool, compile: bool = True
) -> Callable[[], None]:
    """One SGD step; `fast` = what `cnnlab train --amp --channels-last --compile` does on CUDA."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=True)
    net: nn.Module = model
    amp: contextlib.AbstractContextManager = contextlib.nullcontext()
    if fast:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        net = torch.compile(model) if compile else model  # type: ignore[assignment]
        amp = torch.autocast(x.device.type, dtype=torch.bfloat16)

    def step() -> None:
        with amp:
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def repeat(step: Callable[[], None], k: int, device: str) -> Callable[[], None]:
    """k steps then a device sync: one timed repetition."""

    def run() -> None:
        for _ in range(k):
            step()
        sync(device)

    return run


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of forward + backward (matmuls and convolutions, a multiply-add counts 2)."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def alexnet_rows(args: argparse.Namespace, device: str, peaks: dict[str, float]) -> list[list[str]]:
    from cnnlab import models

    rows = []
    for batch in (2,) if args.quick else (128, 512):
        torch.manual_seed(0)
        base = models.create("alexnet").to(device)
        twin = models.create("alexnet").to(device)
        twin.load_state_dict(base.state_dict())
        x = torch.randn(batch, 3, 227, 227, device=device)
        y = torch.randint(0, 1000, (batch,), device=device)
        flops = step_flops(base, x, y)
        eager, fast = make_step(base, x, y, False), make_step(twin, x, y, True, not args.no_compile)
        t0 = time.perf_counter()
        fast()
        sync(device)
        compile_s = time.perf_counter() - t0
        k = 1 if args.quick else 20  # steps per timed repetition, so launch gaps average out
        cases = {"fast": repeat(fast, k, device), "eager": repeat(eager, k, device)}
        t = common.interleave(cases, 1 if args.quick else 5, warmup=0 if args.quick else 1)
        ips_f, ips_e = t.rate("fast", batch * k), t.rate("eager", batch * k)
        mfu_f = flops / batch * ips_f / peaks["bf16"]
        mfu_e = flops / batch * ips_e / peaks["fp32"]
        rows.append(
            [
                f"alexnet 227, batch {batch}",
                f"{ips_f:.0f}",
                f"{ips_e:.0f}",
                f"**{ips_f / ips_e:.2f}**",
                f"{mfu_f:.1%}",
                f"{mfu_e:.1%}",
                f"{compile_s:.0f}",
            ]
        )
        print("  " + " | ".join(rows[-1]), flush=True)
        del base, twin, eager, fast
        torch._dynamo.reset()
    return rows


def tta_rows(args: argparse.Namespace, device: str, target: float) -> list[list[str]]:
    """Fashion-MNIST to `target` test accuracy: cnnlab's trainer against the plain loop, both on the GPU."""
    from bench.tta import NET, _model, time_to
    from cnnlab.training import train

    quick: dict[str, Any] = {"epochs": 1, "limit_train": 512, "limit_val": 500} if args.quick else {}
    with tempfile.TemporaryDirectory() as out:
        cfg = dict(  # the settings given (a mapping): the fast recipe fills the rest
            model=str(NET["name"]),
            dataset="fashion-mnist",
            recipe="fast",
            out=out,
            progress="none",
            report=False,
            device="cuda" if device.startswith("cuda") else "cpu",
            amp=device.startswith("cuda"),
            channels_last=True,
            **quick,
        )
        hist = train(cfg).history
    ours = [
        {"epoch": r["epoch"], "epoch_s": r["epoch_seconds"], "test_acc": 1 - r["val_top1_err"]} for r in hist
    ]
    recipe = plain.PlainRecipe(epochs=1 if args.quick else 15, num_workers=args.workers)
    lim = (512, 500) if args.quick else (None, None)
    peer = list(plain.train_plain(_model(), recipe, target, lim[0], lim[1], device=device))
    rows = []
    for name, runs in (("cnnlab `train --recipe fast --amp --channels-last`", ours), ("plain loop", peer)):
        t, epoch = time_to(runs, target)
        best = max(r["test_acc"] for r in runs)
        rows.append([name, f"{t:.1f} s (epoch {epoch})" if t else "not reached", f"{best:.2%}"])
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--target", type=float, default=0.94, help="Fashion-MNIST test accuracy (default 0.94)")
    p.add_argument("--workers", type=int, default=8, help="peer DataLoader workers (default 8)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile in the fast variant")
    p.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # the smoke test's way in
    args = p.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print(NO_CUDA, file=sys.stderr)
        raise SystemExit(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    load = common.setup(args)
    n = 512 if args.quick else 8192
    peaks = {
        "bf16": matmul_rate(device, torch.bfloat16, n, 3 if args.quick else 50),
        "fp32": matmul_rate(device, torch.float32, n, 3 if args.quick else 20),
    }
    print(f"  matmul: bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s, fp32 {peaks['fp32'] / 1e12:.1f} TFLOP/s")
    steps = common.table(
        ["case", "bf16+CL+compile img/s", "eager fp32 img/s", "ratio", "MFU bf16", "MFU fp32", "compile s"],
        alexnet_rows(args, device, peaks),
    )
    tta = common.table(
        ["", f"time to {args.target:.0%}", "best test accuracy"], tta_rows(args, device, args.target)
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (test run)"
    body = (
        f"Device: {gpu}. Measured matmul rate ({n}x{n}): bf16 {peaks['bf16'] / 1e12:.1f} TFLOP/s, fp32 "
        f"{peaks['fp32'] / 1e12:.1f} TFLOP/s (torch defaults for TF32).\n\n{steps}\n\n"
        "ratio = bf16 autocast + channels-last + torch.compile images/s / eager fp32 images/s, the same "
        "net (cnnlab `alexnet`, 1000 classes) and weights, interleaved repetitions of 20 steps. MFU = "
        "(FLOPs of forward + backward per image, from torch's FlopCounterMode) x images/s / the matmul rate "
        f"of the same precision.\n\nFashion-MNIST, alexnet_small (batch norm):\n\n{tta}\n"
    )
    text = common.section(body, load)
    print(text)
    if args.write:
        common.update_benchmarks_md("gpu", text)


if __name__ == "__main__":
    main()
