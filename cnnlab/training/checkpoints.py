"""A run's checkpoints: what one holds and how the loop's position goes in and comes back out.

cnnlab/checkpoint.py reads a checkpoint file (safely) and checks its fields; this module is the other half
for training: `layout` builds the dict a run saves (the network and how to rebuild and feed it, plus the
optimizer, schedule, scaler and the position needed to resume exactly), `position_of` reads that position
back, and `write` saves best.pt and last.pt in the order that survives a kill between the two.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import cnnlab
from cnnlab import checkpoint
from cnnlab.training import runfolder
from cnnlab.training.build import Run


@dataclass
class Position:
    """Where a run stands: the next epoch and step, the stopped epoch's sums, the rows so far, the best
    validation error."""

    epoch: int = 0
    step: int = 0
    partial: dict[str, Any] | None = None  # the sums of an epoch stopped part-way
    history: list[dict[str, Any]] = field(default_factory=list)
    best_err: float = math.inf


def layout(run: Run, model: nn.Module, scaler: torch.amp.GradScaler, at: Position) -> dict[str, Any]:
    """The checkpoint of `run` with `model`'s weights, at position `at`."""
    cfg = run.cfg
    return {
        "format": checkpoint.FORMAT,
        "format_version": checkpoint.FORMAT_VERSION,
        "model_name": cfg.model,
        "model_options": dict(cfg.model_options),
        "model_source": dict(run.source),  # a user's network: its file and digest ({} for the zoo's)
        "num_classes": len(run.classes),
        "in_channels": run.in_channels,
        "classes": run.classes,
        "config": cfg.to_dict(),
        "data_stats": run.stats.to_dict(),
        "augment": dataclasses.asdict(run.aug),
        "dataset": run.train_ds.identity(),
        "cnnlab_version": cnnlab.__version__,
        "torch_version": str(torch.__version__),  # TorchVersion would not load with weights_only
        "model": model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "epoch": at.epoch,
        "step": at.step,
        "partial": at.partial or {},
        "metrics": list(at.history),
        "best_val_top1_err": at.best_err,
    }


def position_of(saved: dict[str, Any]) -> Position:
    """The position a saved checkpoint resumes from (its optimizer and schedule: build.py; its scaler:
    `restore_scaler`)."""
    return Position(
        epoch=int(saved["epoch"]),
        step=int(saved["step"]),
        partial=dict(saved["partial"]) or None,
        history=list(saved["metrics"]),
        best_err=float(saved["best_val_top1_err"]),
    )


def restore_scaler(saved: dict[str, Any], scaler: torch.amp.GradScaler) -> None:
    """The fp16 loss scale of a saved run ({} when it had none)."""
    if saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])


def write(folder: runfolder.RunFolder, ckpt: dict[str, Any], best: bool) -> None:
    """last.pt, and best.pt first when `best`; then the folder is marked as holding a checkpoint."""
    if best:
        # best.pt before last.pt: a kill between the two leaves last.pt one epoch behind, and the
        # resumed run redoes that epoch and rewrites both (last.pt first would leave best.pt stale).
        checkpoint.save(ckpt, folder.best)
        checkpoint.copy(folder.best, folder.last)
    else:
        checkpoint.save(ckpt, folder.last)
    runfolder.mark_checkpointed(folder.root)  # from now on a restart may not clear this folder
