"""What a run writes beside its checkpoints: config.json, metrics.csv, TensorBoard, curves.png, summary.txt.

Only rank 0 writes. summary.txt comes last, and only for a complete run: a folder with a summary is a
finished run (`--resume` deletes it until the run finishes again).
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from typing import Any

import torch

import cnnlab
from cnnlab import report
from cnnlab.checkpoint import write_text
from cnnlab.training.config import RunConfig
from cnnlab.training.recipes import RECIPES
from cnnlab.training.runfolder import RunFolder


def write_config(folder: RunFolder, cfg: RunConfig, facts: dict[str, Any]) -> None:
    """config.json: every resolved setting, the recipe it came from, the model, data and versions."""
    doc = {
        "config": cfg.to_dict(),
        "recipe": {"name": cfg.recipe, **dict(vars(RECIPES[cfg.recipe]))},
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

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.tensorboard: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tensorboard = SummaryWriter(str(folder.tensorboard))

    def write(self, history: Sequence[dict[str, Any]]) -> None:
        report.write_metrics(self.folder.metrics, history)
        if self.tensorboard is not None and history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def final_numbers(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The last epoch's row, the best validation error and the training time."""
    if not history:
        return {}
    final = dict(history[-1])
    final["best_val_top1_err"] = min(r["val_top1_err"] for r in history)
    final["train_seconds"] = sum(r["epoch_seconds"] for r in history)
    return final


def write_summary(folder: RunFolder, cfg: RunConfig, facts: dict[str, Any], final: dict[str, Any]) -> str:
    """summary.txt, the run's last file; returns the closing line to print."""
    lines = {
        "model": f"{cfg.model} ({facts['num_classes']} classes, {facts['in_channels']} input channels)",
        "dataset": f"{cfg.dataset} ({facts['train_images']} train / {facts['val_images']} val images)",
        "recipe": f"{cfg.recipe} ({cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}, {cfg.schedule})",
        "val views": cfg.val_views,
        "final val top-1 error": report.pct(final["val_top1_err"]),
        "final val top-5 error": report.pct(final["val_top5_err"]),
        "final val accuracy": f"{100 * (1 - final['val_top1_err']):.2f}%",
        "best val top-1 error": report.pct(final["best_val_top1_err"]),
        "train seconds": f"{final['train_seconds']:.1f}",
        "processes": facts["processes"],
    }
    write_text(folder.summary, report.summary_text(lines))
    return (
        f"done: val accuracy {lines['final val accuracy']}, top-5 error {lines['final val top-5 error']}, "
        f"{report.format_seconds(final['train_seconds'])} of training; results in {folder.root}"
    )
