"""What a run's evaluation precision and memory format cost, and what they change in its number: one
evaluation pass of the demo's net (alexnet_fast, flip views, the fast recipe's evaluation batch) over the
test set, in fp32 with the net channels-first (a channels-first run's checkpoint), in fp32 with the net
channels-last (a channels-last run's checkpoint on a CPU without bf16 instructions, or trained without
--amp), and in bf16 autocast channels-last (the demo's run on a CPU with bf16 instructions: its trainer,
`cnnlab eval` and report.html, `device.eval_amp`). Repetitions interleaved, medians reported; with a
checkpoint, each case's test top-1 error too.

    python -m bench.eval_precision [--checkpoint runs/demo/checkpoints/last.pt] [--quick]

Fashion-MNIST's 10,000 test images when installed, else sklearn's digits at 28 px (--quick: 512 images).
Without --checkpoint the net is freshly initialised (timing only).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from cnnlab import checkpoint, data, models
from cnnlab.evaluate import Accumulator, view_probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a trained alexnet_fast checkpoint (e.g. the demo's last.pt)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: few images, two repetitions")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.checkpoint:
        trained = checkpoint.restore(checkpoint.load(args.checkpoint))
        net, stats, aug = trained.model, trained.stats, trained.aug
        ds = data.load(str(trained.ckpt["config"]["dataset"]), "test")
    else:
        try:
            ds = data.load("fashion-mnist", "test")
        except Exception:  # not installed: the same shapes from digits
            ds = data.load("digits", "test")
        net = models.create("alexnet_fast", num_classes=len(ds.classes), in_channels=1)
        stats, aug = data.compute_stats(ds), data.AugmentConfig(input_size=28)  # timing does not need more
    if args.quick:
        ds = data.limit(ds, 512, 0, shuffle=False)
    loader = data.BatchLoader(ds, 128, train=False, aug=aug, stats=stats, seed=0, device="cpu", views="flip")
    batches = list(loader.epoch(0))
    net_cf = copy.deepcopy(net).to(memory_format=torch.contiguous_format).eval()
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last).eval()

    def case(model: nn.Module, amp: torch.dtype | None) -> Callable[[], float]:
        def one_pass() -> float:
            acc = Accumulator(len(ds.classes), torch.device("cpu"), keep_probs=False)
            for x, y in batches:
                acc.update(view_probs(model, x, amp), y)
            return float(acc.result()["top1_err"])

        return one_pass

    cases = {
        "fp32, channels-first net": case(net_cf, None),
        "fp32, channels-last net": case(net_cl, None),
        "bf16 autocast, channels-last": case(net_cl, torch.bfloat16),
    }
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    errors: dict[str, float] = {}
    with torch.no_grad():
        for _ in range(2 if args.quick else args.repeats):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                errors[name] = fn()
                seconds[name].append(time.perf_counter() - t0)
    images = len(ds)
    for name, s in seconds.items():
        err = f", test top-1 error {100 * errors[name]:.2f}%" if args.checkpoint else ""
        print(f"{name:<30} median {statistics.median(s):.3f} s for {images} images (x2 views){err}")
    med = {name: statistics.median(s) for name, s in seconds.items()}
    first, last = med["fp32, channels-first net"], med["fp32, channels-last net"]
    print(
        f"channels-first fp32 takes {first / last:.2f}x the channels-last fp32 evaluation; that takes "
        f"{last / med['bf16 autocast, channels-last']:.2f}x the bf16 one"
    )


if __name__ == "__main__":
    main()
