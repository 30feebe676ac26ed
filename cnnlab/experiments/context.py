"""`Experiment`: what one claim's module gets (budget, data set, model, seeds, folders), and the shared
description of what a run did, read back from the run's own resolved config (so the report cannot drift
from what was trained)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.device import fast_amp_dtype, resolve_device
from cnnlab.experiments import budget as budgets
from cnnlab.experiments import plateau
from cnnlab.experiments.plan import Plan, plan_setting
from cnnlab.experiments.results import ClaimResult
from cnnlab.experiments.runner import Run, Runner
from cnnlab.experiments.verdict import Verdict
from cnnlab.settings import TrainConfig


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
    plan: Plan | None = None  # counts the runs as they finish, for the ETA

    def setting(self, kind: str) -> dict[str, Any]:
        fields = budgets.setting(self.budget, kind, dataset=self.dataset, model=self.model)
        fields["device"] = self.device
        # Evaluation only where a number is read: a claim reads the test set at the last epoch.
        fields["test_each_epoch"] = False
        if self.budget.fast_paths and kind not in self.budget.fast_paths_skip:
            fields["channels_last"] = True
            if fast_amp_dtype(resolve_device(self.device).type) != "none":
                fields["amp"] = True
        if self.data_dir:
            fields["data_dir"] = self.data_dir
        # The data flags every command shares, passed on to each run's `cnnlab train` settings.
        for name in ("download", "skip_bad_images"):
            if getattr(self, name):
                fields[name] = True
        return fields

    def nets(self, model: str | None = None) -> str:
        """Who a claim's sentence is about: 'trained alexnet_small nets', or at a budget that stops early
        'alexnet_small nets early in training'."""
        model = model or self.model
        return f"trained {model} nets" if self.budget.trained else f"{model} nets early in training"

    def runner(self, kind: str) -> Runner:
        return Runner(
            self.runs_dir, self.setting(kind), progress=self.progress, fresh=self.fresh, log=self.log,
            plan=self.plan, setting=plan_setting(self.budget, kind),
        )  # fmt: skip

    def result(
        self, ours: str, verdict: Verdict, table: list[list[str]], ran: tuple[Run, str, str], **rest: Any
    ) -> ClaimResult:
        """How every claim ends: its numbers in one line, the verdict, the table, and what was run
        (`ran`: a run, what the arms differ in, one more bullet; see `describe`)."""
        result = ClaimResult(self.claim, ours, verdict, describe(*ran), table, seeds=list(self.seeds), **rest)
        # Every report: each arm's final test error, its net's full-data reference and the plateau check
        # (relu-vs-tanh's learning-rate search runs, `search-*`, are choices, not arms).
        arms: dict[str, list[Run]] = {}
        for r in result.runs:
            if not r.arm.name.startswith("search-"):
                arms.setdefault(r.arm.label, []).append(r)
        title, rows, numbers = plateau.table(arms)
        result.extra_tables.append((title, rows))
        result.numbers["trained"] = numbers
        return result


def describe(run: Run, varied: str, *extra: str) -> list[str]:
    """'What we ran' bullets for a claim whose arms differ only in `varied`, then `extra` ones."""
    c = run.config
    opts = ", ".join(f"{k}={v}" for k, v in c.model_options.items())
    crops = "random crops" if c.random_crop else "centre crops"
    if c.resize:
        crops += f" of {c.input_size} from images resized to {c.resize}"
    elif c.random_crop and c.pad:
        crops += f" of {c.input_size} after {c.pad} px of padding"
    augment = [crops]
    if c.flip:
        augment.append("mirrors")
    augment.append(f"PCA lighting {c.pca_std}" if c.pca_std else "no PCA lighting")
    # The fast paths (budget.fast_paths) run every arm alike; the report says which ones this run took.
    speed = f"{c.amp_dtype} autocast" if c.amp else "fp32"
    speed += ", channels-last" if c.channels_last else ""
    return [
        data_line(run),
        f"model: {c.model} ({opts}; {run.record['model']['parameters']:,} parameters), "
        f"input {c.input_size} px",
        f"training: {c.epochs} epoch{'s' if c.epochs != 1 else ''}, batch {c.batch_size}, "
        f"SGD lr {c.lr} ({c.schedule}), momentum {c.momentum}, weight decay {c.weight_decay}; "
        f"{', '.join(augment)}; {speed}",
        f"arms differ only in {varied}; validation and test on the {c.val_views} view",
        *extra,
    ]


def data_line(run: Run) -> str:
    """Which images a run trained on, chose on (held out) and was scored on (the test set)."""
    c, d = run.config, run.record["data"]
    if c.val_split:
        return (
            f"data: {c.dataset}, {d['train']['count']} training images; {d['val']['count']} held out of "
            "the training set for every choice (best epoch, learning rate, convergence); "
            f"{d['test']['count']} test images for the numbers reported"
        )
    return (
        f"data: {c.dataset}, {d['train']['count']} training images, {d['test']['count']} test images "
        f"({d['test']['split']} split; no held-out split, so the few choices made are made on them too)"
    )


def data_departure(exp: Experiment, run: Run) -> str:
    """The departure every small-scale claim shares: the data set it trains on instead of ImageNet."""
    c, d = run.config, run.record["data"]
    return (
        f"Data: {exp.dataset} ({d['train']['count']:,} training images, {c.input_size} px), not ImageNet "
        "(1.2 million images at 224 px, 1000 classes); top-1 error over 10 classes."
    )


def run_length(run: Run) -> str:
    """'4 epochs (about 64 steps)': how long a claim's run trained."""
    c, d = run.config, run.record["data"]
    steps = c.epochs * d["train"]["count"] // c.batch_size
    return f"{c.epochs} epoch{'s' if c.epochs != 1 else ''} (about {steps:,} steps)"


def one_cycle_words(c: TrainConfig) -> str:
    """A one-cycle schedule in words: 'a one-cycle schedule (a linear rise to lr 0.07 over the first 25% of
    the steps, then a linear fall to 5% of the peak, held for the last 3 epochs)'."""
    end = f"to {c.lr_floor:.0%} of the peak" if c.lr_floor else "to 0"
    if c.hold_epochs:
        end += f", held for the last {c.hold_epochs} epochs"
    before = " before the hold" if c.hold_epochs else ""
    rise = f"a linear rise to lr {c.lr:g} over the first {c.warmup:.0%} of the steps{before}"
    return f"a one-cycle schedule ({rise}, then a linear fall {end})"
