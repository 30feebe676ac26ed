"""The body of `cnnlab reproduce` (its flags: reproduce.py). This module imports torch; reproduce.py reaches
it through `Lazy` once the arguments have parsed."""

from __future__ import annotations

import argparse
import sys

from cnnlab import experiments


def run_reproduce(args: argparse.Namespace) -> int:
    if args.claim in experiments.COMPUTED:
        experiments.compute(args.claim, args.out, args.force)
        return 0
    options = {
        "budget": args.budget,
        "dataset": args.dataset,
        "seeds": args.seeds,
        "seed_start": args.seed_start,
        "out": args.out,
        "runs_dir": args.runs,
        "model": args.model,
        "device": args.device,
        "data_dir": args.data_dir,
        "download": args.download,
        "skip_bad_images": args.skip_bad_images,
        "progress": args.progress,
        "fresh": args.fresh,
        "force": args.force,
    }
    if args.claim in experiments.GROUPS:
        experiments.reproduce_all(group=args.claim, **options)
    else:
        experiments.reproduce(args.claim, **options)
    sys.stdout.flush()
    return 0
