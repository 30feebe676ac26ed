"""Time to accuracy and peak memory: cnnlab's trainer against a plain PyTorch + torchvision loop.

Both train the same network (alexnet_fast, the fast recipe's net) on Fashion-MNIST and
evaluate the test set after every epoch. The clock counts training only (data, forward, backward,
update); evaluation and set-up are excluded for both. cnnlab: `train({"recipe": "fast", ...})`, its
per-epoch `epoch_seconds`. Peer: bench/plain.py (per-image torchvision pipeline in DataLoader workers,
SGD + Nesterov, one-cycle). Each run is its own process, so its peak memory is its own: the process's
VmHWM, and the peak of PSS summed over it and its loader workers.

    python -m bench.tta [--quick] [--write] [--target 0.93]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch

from bench import common, plain
from cnnlab import report

# The fast recipe's network (batch norm, pools before the norm and ReLU: its defaults).
NET = {"name": "alexnet_fast", "num_classes": 10, "in_channels": 1}


def _model() -> torch.nn.Module:
    from cnnlab import models

    opts = {k: v for k, v in NET.items() if k != "name"}
    return models.create(str(NET["name"]), **opts)  # type: ignore[arg-type]


def _stop_when_done(run_dir: Path, target: float, budget_s: float | None, done: threading.Event) -> None:
    """Watch the run's metrics.csv; SIGTERM this process once an epoch reaches the target or the training
    clock passes the budget. The trainer takes SIGTERM as a request: it finishes the step and stops."""
    while not done.wait(0.5):
        try:
            rows = report.read_metrics(run_dir / "metrics.csv")
        except (OSError, ValueError):
            continue
        clock = sum(float(r["epoch_seconds"]) for r in rows)
        if any(1 - float(r["val_top1_err"]) >= target for r in rows) or (budget_s and clock >= budget_s):
            os.kill(os.getpid(), signal.SIGTERM)
            return


def worker_ours(args: argparse.Namespace) -> dict:
    from cnnlab.training import train

    extra: dict = {"epochs": 1, "limit_train": 512, "limit_val": 500} if args.quick else {}
    if args.epochs:
        extra["epochs"] = args.epochs
    # Unset flags leave the recipe's own choice (the fast recipe is channels-last already).
    if args.channels_last:
        extra["channels_last"] = True
    if args.compile:
        extra["compile"] = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        done = threading.Event()
        watcher = threading.Thread(target=_stop_when_done, args=(out, args.target, args.budget_s, done))
        watcher.start()
        # A stop request that lands after the trainer has restored the previous handler must not kill
        # the process: make that previous handler a harmless one.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        cfg = dict(  # the settings given (a mapping): the fast recipe fills the rest
            model=str(NET["name"]),
            dataset="fashion-mnist",
            recipe="fast",
            out=str(out),
            progress="none",
            report=False,
            **extra,
        )
        try:
            result = train(cfg)
        finally:
            done.set()
            watcher.join()
    skip = ("out", "data_dir", "progress", "overwrite", "resume")
    return {
        "epochs": [
            {"epoch": r["epoch"], "epoch_s": r["epoch_seconds"], "test_acc": 1.0 - r["val_top1_err"]}
            for r in result.history
        ],
        "recipe": {k: v for k, v in result.config.to_dict().items() if v is not None and k not in skip},
        "stopped": result.stopped,
    }


def worker_peer(args: argparse.Namespace) -> dict:
    from cnnlab.settings import RECIPE_TABLE

    # As many passes over the data as cnnlab's fast recipe makes, so both schedules end together.
    recipe = plain.PlainRecipe(epochs=1 if args.quick else args.epochs or RECIPE_TABLE["fast"]["epochs"])
    limits = (512, 500) if args.quick else (None, None)
    runs = plain.train_plain(_model(), recipe, args.target, limits[0], limits[1], max_train_s=args.budget_s)
    return {"epochs": list(runs), "recipe": asdict(recipe)}


def time_to(epochs: list[dict], target: float, key: str = "test_acc") -> tuple[float | None, int | None]:
    """Training seconds up to the end of the first epoch whose test accuracy reaches `target`."""
    clock = 0.0
    for e in epochs:
        clock += e["epoch_s"]
        if e[key] >= target:
            return clock, int(e["epoch"])
    return None, None


def _fmt_time(t: float | None, epoch: int | None, epochs: list[dict], key: str = "test_acc") -> str:
    if t is None:
        best = max(e[key] for e in epochs)
        return f"not reached (best {best:.2%} after {sum(e['epoch_s'] for e in epochs):.0f} s)"
    return f"{t:.0f} s (epoch {epoch})"


# The runs a full benchmark makes: label -> (worker, extra worker flags).
SIDES = {
    "cnnlab": ("ours", []),
    "cnnlab-compile": ("ours", ["--compile"]),
    "plain": ("peer", []),
}
DEFAULT_SIDES = "cnnlab,plain"
LABELS = {
    "cnnlab": "cnnlab `train --recipe fast`",
    "cnnlab-compile": "cnnlab `train --recipe fast --compile`",
    "plain": "plain PyTorch + torchvision loop",
}


FLOOR = (
    "import json, torch, torchvision, cnnlab.training.main; from bench.common import peak_rss_mib; "
    "print(json.dumps({'rss': peak_rss_mib()}))"
)


def run_parent(args: argparse.Namespace) -> tuple[str, str]:
    results = {}
    for side in args.sides.split(","):
        worker, flags = SIDES[side]
        argv = ["-m", "bench.tta", "--worker", worker, *flags, "--target", str(args.target)]
        argv += ["--budget-s", str(args.budget_s), *(["--quick"] if args.quick else [])]
        argv += ["--epochs", str(args.epochs)] if args.epochs else []
        argv += ["--threads", str(args.threads)] if args.threads else []
        t0 = time.perf_counter()
        child = common.run_child(argv)
        wall = time.perf_counter() - t0
        if child.returncode != 0:
            raise SystemExit(f"the {side} training run failed (exit {child.returncode})")
        res = common.last_json_line(child.stdout)
        res.update(wall_s=wall, tree_pss_mib=child.tree_pss_mib)
        results[side] = res
        accs = ", ".join(f"{e['test_acc']:.4f}" for e in res["epochs"])
        print(
            f"  {side}: {len(res['epochs'])} epochs in {wall:.0f} s wall, test accuracy per epoch {accs}; "
            f"peak RSS {res['max_rss_mib']:.0f} MiB, tree PSS {child.tree_pss_mib:.0f} MiB",
            flush=True,
        )
    # The floor every PyTorch training process starts from: the interpreter with torch, torchvision and
    # cnnlab imported (much of it the CUDA build's libraries, mapped whether or not a GPU is used).
    floor = common.run_child(["-c", FLOOR])
    results["floor"] = {
        "max_rss_mib": common.last_json_line(floor.stdout)["rss"],
        "tree_pss_mib": floor.tree_pss_mib,
    }
    (common.OUT_DIR / "tta.json").write_text(json.dumps(results, indent=2))
    return markdown(results, args.target, args.budget_s)


def _per_epoch_s(res: dict) -> float:
    return sum(e["epoch_s"] for e in res["epochs"]) / len(res["epochs"])


def markdown(res: dict, target: float, budget_s: float) -> tuple[str, str]:
    """The time-to-accuracy section and the memory section."""
    res = dict(res)
    floor = res.pop("floor")
    peer = res["plain"]
    t_peer, _ = time_to(peer["epochs"], target)
    rows = []
    for side, r in res.items():
        t, epoch = time_to(r["epochs"], target)
        ratio = f"**{t_peer / t:.2f}**" if t and t_peer else ("> " + f"{budget_s / t:.1f}" if t else "-")
        rows.append(
            [
                LABELS[side],
                _fmt_time(t, epoch, r["epochs"]),
                f"{max(e['test_acc'] for e in r['epochs']):.2%}",
                f"{_per_epoch_s(r):.1f}",
                "" if side == "plain" else ratio,
                "" if side == "plain" else f"**{_per_epoch_s(peer) / _per_epoch_s(r):.2f}**",
            ]
        )
    t, epoch = time_to(peer["epochs"], target, "test_acc_flip")
    best = max(e["test_acc_flip"] for e in peer["epochs"])
    rows.append(
        [
            "plain loop judged with flip-averaged test",
            _fmt_time(t, epoch, peer["epochs"], "test_acc_flip"),
            f"{best:.2%}",
            "",
            "",
            "",
        ]
    )
    tta = common.table(
        [
            "",
            f"training s to {target:.0%} test accuracy",
            "best test accuracy",
            "training s / epoch",
            "time ratio (peer / this)",
            "epoch-time ratio (peer / this)",
        ],
        rows,
    )
    n = max(len(r["epochs"]) for r in res.values())
    per_epoch = common.table(
        ["epoch", *[f"{s}: test acc, train s" for s in res]],
        [[i + 1, *[_cell(r, i) for r in res.values()]] for i in range(n)],
    )
    mem = common.table(
        ["", "peak RSS of the training process (MiB)", "peak PSS incl. loader workers (MiB)", "RSS ratio"],
        [
            [
                LABELS[s],
                f"{r['max_rss_mib']:.0f}",
                f"{r['tree_pss_mib']:.0f}",
                f"**{r['max_rss_mib'] / peer['max_rss_mib']:.2f}**",
            ]
            for s, r in res.items()
        ]
        + [["floor: python with torch, torchvision, cnnlab imported", f"{floor['max_rss_mib']:.0f}", "", ""]],
    )
    recipes = "  \n".join(
        f"{s}: " + ", ".join(f"{k}={v}" for k, v in r["recipe"].items()) for s, r in res.items()
    )
    return (
        f"{tta}\n\nThe clock counts training only (loading batches, forward, backward, update, and "
        "torch.compile's compilation where used), summed over epochs up to the end of the first epoch whose "
        "test accuracy reaches the target; evaluating the 10,000 test images after each epoch and the set-up "
        "(imports, reading the data, statistics) are excluded for both. A run stops at the target or once "
        f"its clock passes {budget_s:.0f} s. cnnlab's test accuracy averages the image and its mirror (the "
        "fast recipe's `val_views=flip`); the plain loop is judged both ways.\n\n"
        f"Per epoch (test accuracy, training seconds):\n\n{per_epoch}\n\n{recipes}  \n"
        f"plain: SGD Nesterov, torch.optim.lr_scheduler.OneCycleLR, per-image torchvision transforms, the "
        f"same network ({NET['name']}), fp32 (cnnlab's fast recipe trains in bf16 where the CPU has bf16 "
        "instructions).\n",
        f"Peak memory of the training runs above, each in its own process:\n\n{mem}\n\n"
        "RSS: the training process's own peak resident set (VmHWM, read by it as it ends); PSS: "
        "proportional set size summed over the process and its DataLoader workers (shared pages split "
        "between them), sampled every 0.25 s.\n",
    )


def _cell(res: dict, i: int) -> str:
    if i >= len(res["epochs"]):
        return ""
    e = res["epochs"][i]
    return f"{e['test_acc']:.2%}, {e['epoch_s']:.1f}"


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--target", type=float, default=0.93, help="test accuracy to reach (default 0.93)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for both (default: each recipe's own)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=300.0,
        help="stop a side whose training clock passes this many seconds (default 300)",
    )
    p.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)  # worker: cnnlab's flags
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--sides",
        default=None,
        help=f"runs to make, of {','.join(SIDES)} (default: {DEFAULT_SIDES}; --quick: cnnlab,plain)",
    )
    p.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = p.parse_args()
    load = common.setup(args)
    if args.sides is None:
        args.sides = "cnnlab,plain" if args.quick else DEFAULT_SIDES
    if args.worker:
        result = (worker_ours if args.worker == "ours" else worker_peer)(args)
        result["max_rss_mib"] = common.peak_rss_mib()
        print(json.dumps(result))
        return
    tta, mem = (common.section(text, load) for text in run_parent(args))
    print(f"{tta}\n{mem}")
    if args.write:
        common.update_benchmarks_md("tta", tta)
        common.update_benchmarks_md("memory", mem)


if __name__ == "__main__":
    main()
