"""What a run writes beside its checkpoints: config.json, metrics.csv, TensorBoard, summary.txt, and the
facts about the run (model, data, processes) that config.json and summary.txt record.

Only rank 0 writes. summary.txt comes last, and only for a complete run: a folder with a summary is a
finished run (`--resume` deletes it until the run finishes again).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch

import cnnlab
from cnnlab import extras, report
from cnnlab.device import precision_words
from cnnlab.outfiles import write_text
from cnnlab.settings import RECIPE_TABLE, TrainConfig
from cnnlab.texttable import pct
from cnnlab.training import plan
from cnnlab.training.build import Run
from cnnlab.training.runfolder import RunFolder


def config_facts(run: Run) -> dict[str, Any]:
    """What the run is, besides its config: the model, augmentation, processes and data, for config.json."""
    cfg, model = run.cfg, run.model
    return {
        "model": {
            "name": cfg.model,
            "options": dict(cfg.model_options),
            "num_classes": len(run.classes),
            "in_channels": run.in_channels,
            "parameters": sum(p.numel() for p in model.parameters()),
            "source": run.source,
            "weights": {"file": cfg.weights, "sha256": cfg.weights_sha256} if cfg.weights else None,
            "frozen": run.frozen.names if run.frozen else [],
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        },
        "augment": dataclasses.asdict(run.aug),
        "distributed": {"world_size": run.ctx.world_size, "device": str(run.ctx.device)},
        "data": {
            "train": run.train_ds.identity(),
            "val": run.val_ds.identity(),
            "test": run.test_ds.identity(),
            "classes": run.classes,
            "validation": plan.validation_text(cfg, len(run.val_ds)),
        },
    }


def summary_facts(run: Run) -> dict[str, Any]:
    """The sizes and processes summary.txt states."""
    return {
        "num_classes": len(run.classes),
        "in_channels": run.in_channels,
        "train_images": len(run.train_ds),
        "val_images": len(run.val_ds),
        "test_images": len(run.test_ds),
        "validation": plan.validation_text(run.cfg, len(run.val_ds)),
        "processes": f"{run.ctx.world_size} on {run.ctx.device}",
        "precision": precision_words(run.eval_amp),
    }


def write_config(folder: RunFolder, cfg: TrainConfig, facts: dict[str, Any]) -> None:
    """config.json: every resolved setting, the recipe it came from, the model, data and versions."""
    doc = {
        "config": cfg.to_dict(),
        "recipe": {"name": cfg.recipe, "overrides": RECIPE_TABLE[cfg.recipe]},
        **facts,
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "cnnlab": cnnlab.__version__,
        },
        "command": sys.argv,
    }
    write_text(folder.config, json.dumps(doc, indent=2, default=str) + "\n")


class EpochLog:
    """metrics.csv (rewritten whole, atomically, after each epoch's checkpoint) and TensorBoard."""

    def __init__(self, folder: RunFolder, held_out: bool = True) -> None:
        self.folder, self.held_out = folder, held_out
        self.tensorboard: Any = None
        # tensorboard is optional: without it the run says so once (`note`) and writes metrics.csv only.
        self.note: str | None = None
        if extras.missing("tensorboard") is not None:
            pip = extras.pip_command("tensorboard")
            self.note = f"note: no TensorBoard events: tensorboard is not installed ({pip})"
            return
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(str(folder.tensorboard))

    def write(self, history: Sequence[dict[str, Any]]) -> None:
        report.write_metrics(self.folder.metrics, history, self.held_out)
        if self.tensorboard is not None and history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch" and (self.held_out or not key.startswith("val_")):
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def final_numbers(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The last epoch's row, the best validation error (and that epoch's test error) and the training time."""
    if not history:
        return {}
    final = dict(history[-1])
    best = min(history, key=lambda r: r["val_top1_err"])
    final["best_val_top1_err"] = best["val_top1_err"]
    final["best_epoch"] = best["epoch"]
    final["best_test_top1_err"] = best.get("test_top1_err", best["val_top1_err"])
    final["train_seconds"] = sum(r["epoch_seconds"] for r in history)
    return final


def write_summary(folder: RunFolder, cfg: TrainConfig, facts: dict[str, Any], final: dict[str, Any]) -> str:
    """summary.txt, the run's last file; returns the closing line to print. Each number names its set."""
    held_out = cfg.val_split > 0
    sets = f"{facts['train_images']} train / {facts['test_images']} test images"
    if held_out:
        sets = (
            f"{facts['train_images']} train / {facts['val_images']} held-out val / "
            f"{facts['test_images']} test images"
        )
    lines = {
        "model": f"{cfg.model} ({facts['num_classes']} classes, {facts['in_channels']} input channels)",
        "dataset": f"{cfg.dataset} ({sets})",
        "recipe": f"{cfg.recipe} ({cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}, {cfg.schedule})",
        "validation set": facts["validation"],
        "val views": cfg.val_views,
        # The checkpoint's numbers as `cnnlab eval` and report.html measure them (`device.eval_amp`).
        "evaluated in": f"{facts['precision']} (as cnnlab eval and report.html)",
        "final test top-1 error": pct(final["test_top1_err"]),
        "final test top-5 error": pct(final["test_top5_err"]),
        "final test accuracy": f"{100 * (1 - final['test_top1_err']):.2f}%",
    }
    if held_out:
        lines["final val top-1 error"] = pct(final["val_top1_err"])
        lines["best val top-1 error"] = (
            f"{pct(final['best_val_top1_err'])} (epoch {final['best_epoch']}: best.pt)"
        )
        lines["test top-1 error of best.pt"] = pct(final["best_test_top1_err"])
    if cfg.weights:
        lines["started from"] = f"{cfg.weights} (sha256 {cfg.weights_sha256[:16]})"
    if cfg.freeze:
        lines["frozen"] = cfg.freeze
    lines["train seconds"] = f"{final['train_seconds']:.1f}"
    lines["processes"] = facts["processes"]
    write_text(folder.summary, report.summary_text(lines))
    return (
        f"done: test accuracy {lines['final test accuracy']} (top-1 error "
        f"{lines['final test top-1 error']}), top-5 error {lines['final test top-5 error']}, "
        f"{report.format_seconds(final['train_seconds'])} of training; results in {folder.root}"
    )
