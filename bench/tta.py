"""Time to accuracy and peak memory: cnnlab's trainer against a plain PyTorch + torchvision loop.

Both train the same network (alexnet_small with batch norm, the fast recipe's net) on Fashion-MNIST and
evaluate the test set after every epoch. The clock counts training only (data, forward, backward,
update); evaluation and set-up are excluded for both. cnnlab: `train(TrainConfig(recipe="fast"))`, its
per-epoch `epoch_seconds`. Peer: bench/plain.py (per-image torchvision pipeline in DataLoader workers,
SGD + Nesterov, one-cycle). Each run is its own process, so its peak memory is its own: ru_maxrss of that
process (from wait4) and the peak of PSS summed over it and its loader workers.

    python -m bench.tta [--quick] [--write] [--target 0.93]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict

import torch

from bench import common, plain

NET = {"name": "alexnet_small", "num_classes": 10, "in_channels": 1, "batch_norm": True}


def _model() -> torch.nn.Module:
    from cnnlab import models

    opts = {k: v for k, v in NET.items() if k != "name"}
    return models.create(str(NET["name"]), **opts)  # type: ignore[arg-type]


def worker_ours(args: argparse.Namespace) -> dict:
    from cnnlab.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        extra = {"epochs": 1, "limit_train": 512, "limit_val": 500} if args.quick else {}
        if args.epochs:
            extra["epochs"] = args.epochs
        cfg = TrainConfig(model=str(NET["name"]), dataset="fashion-mnist", recipe="fast", out=out,
                          progress="none", **extra)  # type: ignore[arg-type]  # fmt: skip
        result = train(cfg)
    return {
        "epochs": [
            {"epoch": r["epoch"], "epoch_s": r["epoch_seconds"], "test_acc": 1.0 - r["val_top1_err"]}
            for r in result.history
        ],
        "recipe": {k: v for k, v in result.config.to_dict().items() if v is not None and k not in
                   ("out", "data_dir", "progress", "overwrite", "resume")},  # fmt: skip
    }


def worker_peer(args: argparse.Namespace) -> dict:
    recipe = plain.PlainRecipe(epochs=args.epochs or plain.PlainRecipe.epochs)
    limits = (512, 500) if args.quick else (None, None)
    if args.quick:
        recipe.epochs = 1
    rows = []
    for r in plain.train_plain(_model(), recipe, limit_train=limits[0], limit_val=limits[1]):
        rows.append({"epoch": r["epoch"], "epoch_s": r["epoch_s"], "test_acc": r["test_acc"],
                     "test_acc_flip": r["test_acc_flip"]})  # fmt: skip
    return {"epochs": rows, "recipe": asdict(recipe)}


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


def run_parent(args: argparse.Namespace) -> str:
    results = {}
    for side in ("ours", "peer"):
        argv = ["-m", "bench.tta", "--worker", side] + (["--quick"] if args.quick else [])
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
        print(f"  {side}: {len(res['epochs'])} epochs in {wall:.0f} s wall, test accuracy per epoch {accs}; "
              f"peak RSS {res['max_rss_mib']:.0f} MiB, tree PSS {child.tree_pss_mib:.0f} MiB", flush=True)
    (common.OUT_DIR / "tta.json").write_text(json.dumps(results, indent=2))
    return markdown(results, args.target)


def markdown(res: dict, target: float) -> str:
    o, p = res["ours"], res["peer"]
    t_o, e_o = time_to(o["epochs"], target)
    t_p, e_p = time_to(p["epochs"], target)
    t_pf, e_pf = time_to(p["epochs"], target, "test_acc_flip")
    ratio = f"**{t_p / t_o:.1f}**" if t_o and t_p else "-"
    s_o = sum(e["epoch_s"] for e in o["epochs"]) / len(o["epochs"])
    s_p = sum(e["epoch_s"] for e in p["epochs"]) / len(p["epochs"])
    tta = common.table(
        ["", f"time to {target:.0%} test accuracy", "best test accuracy", "training s / epoch",
         "epochs run", "wall s (whole process)"],
        [["cnnlab `train` (fast recipe)", _fmt_time(t_o, e_o, o["epochs"]), f"{max(e['test_acc'] for e in o['epochs']):.2%}",
          f"{s_o:.1f}", len(o["epochs"]), f"{o['wall_s']:.0f}"],
         ["plain PyTorch + torchvision loop", _fmt_time(t_p, e_p, p["epochs"]),
          f"{max(e['test_acc'] for e in p['epochs']):.2%}", f"{s_p:.1f}", len(p["epochs"]), f"{p['wall_s']:.0f}"],
         ["plain loop, judged with flip-averaged test", _fmt_time(t_pf, e_pf, p["epochs"], "test_acc_flip"),
          f"{max(e['test_acc_flip'] for e in p['epochs']):.2%}", "", "", ""],
         ["ratio (peer time / cnnlab time)", ratio, "", f"**{s_p / s_o:.1f}**", "", ""]],
    )  # fmt: skip
    per_epoch = common.table(
        ["epoch", "cnnlab test acc", "cnnlab train s", "peer test acc", "peer test acc (flip)", "peer train s"],
        [[i + 1, _cell(o, i, "test_acc", "{:.2%}"), _cell(o, i, "epoch_s", "{:.1f}"), _cell(p, i, "test_acc", "{:.2%}"),
          _cell(p, i, "test_acc_flip", "{:.2%}"), _cell(p, i, "epoch_s", "{:.1f}")]
         for i in range(max(len(o["epochs"]), len(p["epochs"])))],
    )  # fmt: skip
    mem = common.table(
        ["", "peak RSS of the training process (MiB)", "peak PSS incl. loader workers (MiB)"],
        [["cnnlab `train`", f"{o['max_rss_mib']:.0f}", f"{o['tree_pss_mib']:.0f}"],
         ["plain loop", f"{p['max_rss_mib']:.0f}", f"{p['tree_pss_mib']:.0f}"],
         ["ratio (cnnlab / peer)", f"**{o['max_rss_mib'] / p['max_rss_mib']:.2f}**",
          f"**{o['tree_pss_mib'] / p['tree_pss_mib']:.2f}**"]],
    )  # fmt: skip
    recipe_o = ", ".join(f"{k}={v}" for k, v in o["recipe"].items())
    recipe_p = ", ".join(f"{k}={v}" for k, v in p["recipe"].items())
    return (
        f"{tta}\n\nThe clock counts training only (loading batches, forward, backward, update), summed over "
        "epochs up to the end of the first epoch whose test accuracy reaches the target; evaluating the "
        "10,000 test images after each epoch and all set-up (imports, reading the data, statistics) are "
        "excluded for both. cnnlab's test accuracy averages the image and its mirror (the fast recipe's "
        "`val_views=flip`); the plain loop is judged both ways.\n\n"
        f"Per epoch:\n\n{per_epoch}\n\n"
        f"cnnlab: {recipe_o}.  \nPeer: {recipe_p}; SGD Nesterov, torch.optim.lr_scheduler.OneCycleLR, "
        f"same network ({NET['name']}, batch norm).\n\n"
        "<!-- memory -->\n"
        f"Peak memory of the same two training runs, each in its own process:\n\n{mem}\n\n"
        "RSS: the training process's own peak resident set (VmHWM, read by it at the end); PSS: proportional set size summed over "
        "the process and its DataLoader workers (shared pages split between them), sampled every 0.25 s.\n"
    )


def _cell(res: dict, i: int, key: str, fmt: str) -> str:
    return fmt.format(res["epochs"][i][key]) if i < len(res["epochs"]) else ""


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--target", type=float, default=0.93, help="test accuracy to reach (default 0.93)")
    p.add_argument("--epochs", type=int, default=None, help="epochs for both (default: each recipe's own)")
    p.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = p.parse_args()
    load = common.setup(args)
    if args.worker:
        result = (worker_ours if args.worker == "ours" else worker_peer)(args)
        result["max_rss_mib"] = common.peak_rss_mib()
        print(json.dumps(result))
        return
    text = common.section(run_parent(args), load)
    print(text)
    if args.write:
        common.update_benchmarks_md("tta", text)


if __name__ == "__main__":
    main()
