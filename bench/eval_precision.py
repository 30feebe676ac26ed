"""What evaluating in fp32 costs, and what the net's memory format does to it: one evaluation pass of the
demo's net (alexnet_fast, flip views, the fast recipe's evaluation batch) over the test set, in fp32 with
the net channels-first (a channels-first run's checkpoint, and `cnnlab eval` / report.html on any
checkpoint before they restored its run's format), in fp32 with the net channels-last (what the trainer
does in a channels-last run, and `cnnlab eval` / report.html on its checkpoint), and in bf16 autocast on
channels-last (what the trainer did before issue 25). Repetitions interleaved, medians reported.

    python -m bench.eval_precision [--quick]

Fashion-MNIST's 10,000 test images when installed, else sklearn's digits at 28 px (--quick: 512 images).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from cnnlab import data, models
from cnnlab.device import autocast
from cnnlab.evaluate import view_probs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: few images, two repetitions")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    try:
        ds = data.load("fashion-mnist", "test")
    except Exception:  # not installed: the same shapes from digits
        ds = data.load("digits", "test")
    if args.quick:
        ds = data.limit(ds, 512, 0, shuffle=False)
    net = models.create("alexnet_fast", num_classes=len(ds.classes), in_channels=1).eval()
    stats = data.compute_stats(ds)  # the test set's own statistics: timing does not depend on them
    aug = data.AugmentConfig(input_size=28)
    loader = data.BatchLoader(ds, 128, train=False, aug=aug, stats=stats, seed=0, device="cpu", views="flip")
    batches = list(loader.epoch(0))

    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)

    def fp32() -> None:
        for x, _ in batches:
            view_probs(net, x)

    def fp32_cl() -> None:
        for x, _ in batches:
            view_probs(net_cl, x)

    def bf16() -> None:
        for x, _ in batches:
            view_probs(net_cl, x, torch.bfloat16, channels_last=True)

    cases = {
        "fp32, channels-first net": fp32,
        "fp32, channels-last net": fp32_cl,
        "bf16 autocast, channels-last": bf16,
    }
    seconds: dict[str, list[float]] = {k: [] for k in cases}
    with torch.no_grad(), autocast(None, "cpu"):
        for _ in range(2 if args.quick else args.repeats):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                seconds[name].append(time.perf_counter() - t0)
    images = len(ds)
    for name, s in seconds.items():
        print(f"{name:<30} median {statistics.median(s):.3f} s for {images} images (x2 views)")
    med = {name: statistics.median(s) for name, s in seconds.items()}
    first, last = med["fp32, channels-first net"], med["fp32, channels-last net"]
    print(
        f"channels-first fp32 takes {first / last:.2f}x the channels-last fp32 evaluation; that takes "
        f"{last / med['bf16 autocast, channels-last']:.2f}x the bf16 one"
    )


if __name__ == "__main__":
    main()
