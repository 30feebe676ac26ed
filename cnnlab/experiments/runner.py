"""The common runner: each arm and seed's settings given to `train`, its per-epoch history collected.

Run folders are named `ARM-DIGEST-seedN`, DIGEST a hash of every setting but the seed, so two claims that
need the same run (the `standard` baseline serves six of them) share one folder under the same runs
directory and train it once. A finished folder (summary.txt present) is reused, an interrupted one is
resumed from its last checkpoint, and `fresh` retrains everything. A run whose loss turns non-finite is
recorded as failed (failed.txt) instead of stopping the experiment: for the init claim that is a result.

Which set a number comes from: metrics.csv's `val_*` columns are the validation images (held out of the
training set with `--val-split`, else the test set itself) and `test_*` the official test set.
`Run.heldout` (selection: best epoch, learning-rate search, convergence) and `Run.test` (the numbers a
claim reports) name the columns.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab import checkpoint, data, evaluate, report
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError, NonFiniteLoss
from cnnlab.experiments.plan import Plan, cost_of
from cnnlab.texttable import pct
from cnnlab.training import TrainConfig, train
from cnnlab.training.build import run_datasets
from cnnlab.training.runfolder import RunFolder

# Settings that do not change what a run computes (and so are not part of its folder's digest).
_NOT_IN_DIGEST = frozenset(
    {"out", "progress", "overwrite", "resume", "seed", "workers", "stop_after", "report"}
)


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: TrainConfig fields on top of the setting."""

    name: str  # folder-safe, e.g. "lrn-off"
    label: str  # for tables and plot legends, e.g. "LRN off"
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    arm: Arm
    seed: int
    dir: Path
    history: list[dict[str, Any]]
    failed: str | None = None  # why the run did not finish (a non-finite loss)
    reused: bool = False

    def last(self, key: str) -> float:
        """The final epoch's value of a metrics.csv column; NaN for a failed run."""
        if self.failed or not self.history:
            return math.nan
        return float(self.history[-1][key])

    def curve(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.history]

    @property
    def record(self) -> dict[str, Any]:
        """The run's config.json: its settings ("config"), model, augmentation and data."""
        doc: dict[str, Any] = json.loads((self.dir / "config.json").read_text())
        return doc

    @property
    def config(self) -> TrainConfig:
        """The settings the run was trained with, resolved, as its config.json records them."""
        return TrainConfig.from_dict(self.record["config"], str(self.dir / "config.json"))

    @property
    def held_out(self) -> bool:
        """Whether the run validated on images held out of its training set (`test_*`: the test set)."""
        return bool(self.history) and self.config.val_split > 0

    @staticmethod
    def test(metric: str) -> str:
        """The metrics.csv column of `metric` (e.g. "top1_err") on the test set."""
        return f"test_{metric}"

    @staticmethod
    def heldout(metric: str) -> str:
        """The column of `metric` on the validation images (the only set anything may be selected on)."""
        return f"val_{metric}"

    @property
    def checkpoint_path(self) -> Path:
        return RunFolder(self.dir).last

    @property
    def seconds(self) -> float:
        return sum(float(r["epoch_seconds"]) for r in self.history)


def _history(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.csv"
    if not path.is_file():
        return []
    rows = [
        {k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in report.read_metrics(path)
    ]
    # A run without a held-out split writes no val_* columns: its validation set was the test set.
    return [{**{f"val{k[4:]}": v for k, v in r.items() if k.startswith("test_")}, **r} for r in rows]


def digest(settings: Mapping[str, Any]) -> str:
    """A hash of every setting given but those that do not change what the run computes."""
    key = {k: v for k, v in TrainConfig().replace(**settings).to_dict().items() if k not in _NOT_IN_DIGEST}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]


class Runner:
    """Trains the arms of one setting; `base` holds the setting's TrainConfig fields, `setting` its name
    as the plan counts it (`plan.plan_setting`)."""

    def __init__(
        self,
        runs_dir: Path,
        base: Mapping[str, Any],
        *,
        progress: str = "none",
        fresh: bool = False,
        log: Callable[[str], None] = print,
        plan: Plan | None = None,
        setting: str = "",
    ) -> None:
        self.runs_dir, self.base = Path(runs_dir), dict(base)
        self.progress, self.fresh, self.log = progress, fresh, log
        self.plan, self.setting = plan, setting

    def settings(self, arm: Arm, seed: int) -> dict[str, Any]:
        """The settings `train` is given for one arm and seed (the recipe fills the others)."""
        # Claim runs are many and short: their reports are the claim's own (results.py), not report.html.
        given = {**self.base, **arm.settings, "seed": seed, "progress": self.progress, "report": False}
        return {**given, "out": str(self.runs_dir / f"{arm.name}-{digest(given)}-seed{seed}")}

    def run(self, arm: Arm, seed: int) -> Run:
        given = self.settings(arm, seed)
        folder = Path(given["out"])
        if not self.fresh and (folder / "summary.txt").is_file():
            return self._done(Run(arm, seed, folder, _history(folder), reused=True))
        if not self.fresh and (folder / "failed.txt").is_file():
            failed = (folder / "failed.txt").read_text().strip()
            return self._done(Run(arm, seed, folder, _history(folder), failed=failed, reused=True))
        resume = not self.fresh and RunFolder(folder).last.is_file()
        t0 = time.perf_counter()
        try:
            result = train({**given, "resume": resume, "overwrite": not resume})
        except NonFiniteLoss as exc:  # a diverged run is a result (the init claim), not a failure
            checkpoint.write_text(folder / "failed.txt", str(exc) + "\n")
            return self._done(
                Run(arm, seed, folder, _history(folder), failed=str(exc)), time.perf_counter() - t0
            )
        if result.stopped is not None:
            raise CnnlabError(f"run {folder} was stopped ({result.stopped}); rerun the command to resume it")
        return self._done(Run(arm, seed, folder, list(result.history)), time.perf_counter() - t0)

    def _done(self, run: Run, seconds: float | None = None) -> Run:
        if run.failed:
            what = "failed: the loss became non-finite"
        else:
            what = f"test top-1 error {pct(run.last(run.test('top1_err')))}"
        when = "reused" if seconds is None else report.format_seconds(seconds)
        note = ""
        if self.plan is not None:  # the run's cost from the settings it was given, as the plan counts it
            cost = cost_of(self.settings(run.arm, run.seed))
            note = " " + self.plan.finished(str(run.dir), cost, seconds, self.setting)
        self.log(f"  {run.arm.label}, seed {run.seed}: {what} ({when}) [{run.dir.name}]{note}")
        return run

    def runs(self, arms: Sequence[Arm], seeds: Sequence[int]) -> dict[str, list[Run]]:
        """Every arm for every seed, seed-major so a cut-short experiment has all arms of its first seeds."""
        out: dict[str, list[Run]] = {a.name: [] for a in arms}
        for seed in seeds:
            for arm in arms:
                out[arm.name].append(self.run(arm, seed))
        return out


def evaluate_run(
    run: Run, *, split: str = "test", views: str = "center", batch_size: int = 250
) -> dict[str, Any]:
    """`evaluate.evaluate` of a run's final weights on the test images it was scored on (split "test"),
    or on the very training images it learnt from (split "train": its subset, less any held-out split),
    preprocessed as its run did, in eval mode."""
    ckpt = checkpoint.load(run.checkpoint_path)
    cfg = TrainConfig.from_dict(ckpt["config"], str(run.checkpoint_path))
    dev = resolve_device(cfg.device)
    train_ds, _, test_ds = run_datasets(cfg)  # the trainer's own draw: subset, held-out split
    ds = train_ds if split == "train" else test_ds
    net = checkpoint.restore(ckpt, dev)
    loader = data.BatchLoader(
        ds, batch_size, train=False, aug=net.aug, stats=net.stats, seed=cfg.seed, device=dev, views=views
    )
    return evaluate.evaluate(net.model, loader, dev, amp=net.amp)
