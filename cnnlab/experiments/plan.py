"""The plan line of `cnnlab reproduce`: how many runs the claims will train, and an ETA kept honest as they
finish.

`planned` lists the distinct runs of a set of claims (a run that several claims share, such as the
standard baseline, counts once) with a cost each: training images times epochs, times the net's cost
relative to alexnet_small. `Plan` turns it into lines: before the first run an ETA from `SECONDS_PER_UNIT`
(a measured rate, marked as such), afterwards from the seconds the runs of this invocation actually took
per unit of cost, per setting: a setting's runs differ in what a unit costs (batch 32 against 128, fp32
against bf16), so a setting's own pace counts its runs once one of them has finished, and the pace of all
so far counts the others. Runs found finished in the runs folder cost nothing and leave the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnlab.experiments.budget import Budget, seeds_for, setting, setting_of
from cnnlab.report import format_seconds

# Cost of one training image-epoch relative to alexnet_small at 28 px (multiply-adds, roughly; the
# successors' nets are about twice alexnet_small's).
NET_COST = {"alexnet_small": 1.0, "figure1_net": 1.0, "vgg_small": 2.0, "googlenet_small": 2.0}
# What a run costs on this project's 2-core CPU, quiet: a fixed part (building the net and the run's data,
# checkpoints, the evaluations) and a part per unit of cost. Fitted to `reproduce all --budget medium`
# (docs/claims.md): 58 runs and 10.2 million units in 39:56. The first ETA's rates; the runs' own replace
# the per-unit one as they finish.
SECONDS_PER_RUN = 4.0
SECONDS_PER_UNIT = 0.00021
_MODEL_OF = {"vgg-depth": "vgg_small", "vgg-lrn": "vgg_small", "googlenet-aux": "googlenet_small"}


def _arms(claim: str) -> list[str]:
    """The arm names a claim trains (the `standard` baseline under the name every claim shares)."""
    return {
        "relu-vs-tanh": ["relu", "tanh"],
        "lrn": ["baseline", "lrn-off"],
        "overlapping-pooling": ["baseline", "pool-2x2"],
        "pca-lighting": ["baseline", "pca-off"],
        "dropout": ["dropout", "no-dropout"],
        "ten-crop": ["baseline"],
        "ensemble": ["baseline"],
        "paper-init": ["init-paper", "init-paper-bias01", "baseline"],
        "vgg-depth": ["vgg-a", "vgg-b", "vgg-d"],
        "vgg-lrn": ["vgg-a", "vgg-a-lrn"],
        "googlenet-aux": ["aux-on", "aux-off"],
    }[claim]


def cost_of(settings: Mapping[str, Any]) -> float:
    """A run's cost from its settings: images trained on (the held-out ones excluded; the whole 60,000 of
    Fashion-MNIST without a limit) times epochs, times its net's relative cost."""
    images = int(settings.get("limit_train") or 60_000) - int(settings.get("val_split") or 0)
    return float(max(images, 1) * int(settings.get("epochs", 1))) * NET_COST.get(str(settings["model"]), 1.0)


def plan_setting(budget: Budget, kind: str) -> str:
    """The setting a run of `kind` is planned and paced under: `init` is `standard` where the budget gives
    them the same settings (the same run folders as the baseline's)."""
    if kind == "init" and budget.settings["init"] == budget.settings["standard"]:
        return "standard"
    return kind


def planned(
    claims: Sequence[str], budget: Budget, *, dataset: str, model: str, seeds: int | None, seed_start: int
) -> dict[tuple[str, str, int], float]:
    """(setting, arm, seed) -> cost, for every distinct run the claims train."""
    runs: dict[tuple[str, str, int], float] = {}
    for claim in claims:
        kind = plan_setting(budget, setting_of(claim))
        cost = cost_of(setting(budget, kind, dataset=dataset, model=_MODEL_OF.get(claim, model)))
        n = seeds if seeds is not None else seeds_for(budget, claim)
        if claim == "ensemble":
            n = max(budget.ensemble_nets, n)
        for arm in _arms(claim):
            for seed in range(seed_start, seed_start + n):
                runs[(kind, arm, seed)] = cost
        if claim == "relu-vs-tanh":  # the learning-rate search, on seeds of its own
            for act in ("relu", "tanh"):
                for lr in budget.lr_grid:
                    for seed in budget.sweep_seeds:
                        runs[(kind, f"search-{act}-lr{lr:g}", seed)] = cost
    return runs


@dataclass
class _Pace:
    """The runs of one setting: what is left of them, and what those of this invocation took."""

    left_runs: int = 0
    left_cost: float = 0.0
    trained_runs: int = 0
    trained_cost: float = 0.0
    trained_seconds: float = 0.0

    def per_unit(self, per_run: float) -> float | None:
        """Seconds per unit of cost of the runs trained, beyond their fixed `per_run` seconds; None before
        any."""
        if self.trained_cost <= 0:
            return None
        return max(self.trained_seconds - self.trained_runs * per_run, 0.0) / self.trained_cost


@dataclass
class Plan:
    """Counts runs as they finish and says how long the rest should take."""

    costs: dict[tuple[str, str, int], float]
    rate: float = SECONDS_PER_UNIT  # seconds per unit of cost before any run has finished
    per_run: float = SECONDS_PER_RUN  # the fixed seconds of every run
    done: set[str] = field(default_factory=set)  # run folders already counted
    reused: int = 0
    paces: dict[str, _Pace] = field(default_factory=dict)  # per setting

    def __post_init__(self) -> None:
        for (kind, _arm, _seed), cost in self.costs.items():
            pace = self.paces.setdefault(kind, _Pace())
            pace.left_runs += 1
            pace.left_cost += cost

    @property
    def total(self) -> int:
        return len(self.costs)

    def seconds_per_unit(self, kind: str | None = None) -> float:
        """The per-unit rate of setting `kind` (None: of all settings): the seconds beyond their fixed part
        of this invocation's runs of it; before any finished, the rate of all runs so far, or `rate`."""
        own = self.paces[kind].per_unit(self.per_run) if kind in self.paces else None
        if own is not None:
            return own
        every = _Pace(
            trained_runs=sum(p.trained_runs for p in self.paces.values()),
            trained_cost=sum(p.trained_cost for p in self.paces.values()),
            trained_seconds=sum(p.trained_seconds for p in self.paces.values()),
        ).per_unit(self.per_run)
        return self.rate if every is None else every

    def eta(self) -> float:
        return sum(
            max(p.left_runs, 0) * self.per_run + max(p.left_cost, 0.0) * self.seconds_per_unit(kind)
            for kind, p in self.paces.items()
        )

    def _basis(self) -> str:
        if any(p.trained_cost > 0 for p in self.paces.values()):
            return "at the pace of this invocation's runs so far"
        per = f"{self.per_run:g} s per run and {1000 * self.rate:.2f} s per 1,000 image-epochs"
        return f"estimated at {per} (docs/claims.md), not measured in this invocation"

    def line(self) -> str:
        """The plan line printed before the first run."""
        cost = sum(self.costs.values())
        return (
            f"plan: {self.total} runs ({cost / 1e6:.1f} million image-epochs of training); ETA "
            f"{format_seconds(self.eta())} ({self._basis()}); finished runs in the runs folder are reused"
        )

    def finished(self, folder: str, cost: float, seconds: float | None, kind: str) -> str:
        """Count one run of setting `kind` (`seconds` None: found finished, reused) and return its progress
        note, e.g. '[12/146, ETA 41:10]'. A folder counted before in this invocation changes nothing."""
        if folder not in self.done:
            self.done.add(folder)
            pace = self.paces.setdefault(kind, _Pace())
            pace.left_runs -= 1
            pace.left_cost -= cost
            if seconds is None:
                self.reused += 1
            else:
                pace.trained_runs += 1
                pace.trained_cost += cost
                pace.trained_seconds += seconds
        count = min(len(self.done), self.total)
        eta = self.eta()
        return f"[{count}/{self.total}, ETA {format_seconds(eta) if math.isfinite(eta) else 'n/a'}]"
