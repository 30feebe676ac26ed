"""`Experiment`: what one claim's module gets (budget, data set, model, seeds, folders), and the shared
description of what a run did, read back from the run's own config.json (so the report cannot drift
from what was trained)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.experiments import budget as budgets
from cnnlab.experiments.runner import Run, Runner


@dataclass
class Experiment:
    claim: str
    budget: budgets.Budget
    dataset: str
    model: str
    seeds: list[int]
    folder: Path  # the claim's report folder
    runs_dir: Path  # run folders (shared by the claims of `reproduce all`)
    progress: str = "none"
    fresh: bool = False
    device: str = "auto"
    data_dir: str | None = None
    log: Callable[[str], None] = print
    download: bool = False
    skip_bad_images: bool = False

    def setting(self, kind: str) -> dict[str, Any]:
        fields = budgets.setting(self.budget, kind, dataset=self.dataset, model=self.model)
        fields["device"] = self.device
        if self.data_dir:
            fields["data_dir"] = self.data_dir
        # The data flags every command shares, passed on to each run's `cnnlab train` settings.
        for name in ("download", "skip_bad_images"):
            if getattr(self, name):
                fields[name] = True
        return fields

    def runner(self, kind: str) -> Runner:
        return Runner(
            self.runs_dir, self.setting(kind), progress=self.progress, fresh=self.fresh, log=self.log
        )


def resolved(run: Run) -> dict[str, Any]:
    """The run's config.json: the resolved TrainConfig ("config"), model, augmentation and data."""
    doc: dict[str, Any] = json.loads((run.dir / "config.json").read_text())
    return doc


def describe(run: Run, varied: str, *extra: str) -> list[str]:
    """'What we ran' bullets for a claim whose arms differ only in `varied`, then `extra` ones."""
    doc = resolved(run)
    c, aug = doc["config"], doc["augment"]
    opts = ", ".join(f"{k}={v}" for k, v in doc["model"]["options"].items())
    crops = "random crops" if aug["random_crop"] else "centre crops"
    if aug["resize"]:
        crops += f" of {aug['input_size']} from images resized to {aug['resize']}"
    elif aug["random_crop"] and aug["pad"]:
        crops += f" of {aug['input_size']} after {aug['pad']} px of padding"
    augment = [crops]
    if aug["flip"]:
        augment.append("mirrors")
    augment.append(f"PCA lighting {aug['pca_std']}" if aug["pca_std"] else "no PCA lighting")
    return [
        data_line(doc),
        f"model: {c['model']} ({opts}; {doc['model']['parameters']:,} parameters), "
        f"input {c['input_size']} px",
        f"training: {c['epochs']} epoch{'s' if c['epochs'] != 1 else ''}, batch {c['batch_size']}, "
        f"SGD lr {c['lr']} ({c['schedule']}), "
        f"momentum {c['momentum']}, weight decay {c['weight_decay']}; {', '.join(augment)}",
        f"arms differ only in {varied}; validation and test on the {c['val_views']} view",
        *extra,
    ]


def data_line(doc: dict[str, Any]) -> str:
    """Which images a run trained on, chose on (held out) and was scored on (the test set)."""
    c, d = doc["config"], doc["data"]
    test = d.get("test", d["val"])
    if c.get("val_split") and "test" in d:
        return (
            f"data: {c['dataset']}, {d['train']['count']} training images; {d['val']['count']} held out of "
            "the training set for every choice (best epoch, learning rate, convergence); "
            f"{test['count']} test images for the numbers reported"
        )
    return (
        f"data: {c['dataset']}, {d['train']['count']} training images, {test['count']} test images "
        f"({test['split']} split; this cnnlab has no held-out split, so the few choices made are made on "
        "them too)"
    )
