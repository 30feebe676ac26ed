"""What a run says before its first step (the plan) and while it trains (the whole run's ETA).

The plan is one line: recipe, epochs, steps, batch, device, the three sets' sizes and the model; a CPU run
of more than LONG_CPU_EPOCHS epochs adds a warning line, because the paper recipe's 90 epochs there take
hours. The ETA comes once the pace is known (ETA_AFTER steps, or the first epoch's end if that is sooner),
then rides on every progress line and epoch line.
"""

from __future__ import annotations

import time
from typing import Any

from cnnlab import report
from cnnlab.settings import RECIPE_TABLE, TrainConfig
from cnnlab.training import recipes

LONG_CPU_EPOCHS = 20
ETA_AFTER = 10  # steps timed before the first whole-run estimate (after WARMUP_STEPS untimed ones)
WARMUP_STEPS = 2  # the first steps pay for allocation and kernel selection


def _n(count: int) -> str:
    return f"{count:,}"


def validation_text(cfg: TrainConfig, val_images: int) -> str:
    """Which images `val_*` measures and what is chosen on them (plan line, summary, config.json)."""
    if cfg.val_split:
        chosen = "best.pt" + (" and the lr drops" if cfg.schedule == "plateau" else "")
        return (
            f"{_n(val_images)} images held out of the training set (--val-split, seed {cfg.seed}, "
            f"stratified); they choose {chosen}; the test set is reported apart (test_*)"
        )
    drops = "; the plateau schedule's lr drops look at it" if cfg.schedule == "plateau" else ""
    return f"the test set (no --val-split): nothing is chosen on it, best.pt is the last epoch{drops}"


def layout_note(cfg: TrainConfig) -> str:
    """A torchvision-compatible model the recipe would have changed the layout of: said, not done."""
    if not recipes.keeps_torchvision_layout(cfg.model):
        return ""
    withheld = [
        k
        for k, v in RECIPE_TABLE[cfg.recipe].items()
        if k in recipes.LAYOUT_SWITCHES and k in cfg.model_options and cfg.model_options[k] != v
    ]
    if not withheld:
        return ""
    flags = ", ".join("--" + k.replace("_", "-") for k in withheld)
    return (
        f"{cfg.model} keeps torchvision's layout: the {cfg.recipe} recipe's {', '.join(withheld)} is not "
        f"applied (its weights would no longer load into torchvision; {flags} asks for it)"
    )


def upsample_note(cfg: TrainConfig, train_ds: Any) -> str:
    """Images smaller than the model's input are blown up to it, silently costing the square of the ratio in
    compute (vgg16 on 28 px Fashion-MNIST: 64x the pixels): said in the plan."""
    side = cfg.resize or int(getattr(train_ds, "image_size", (0, 0))[0])
    if not 0 < side < cfg.input_size:
        return ""
    ratio = (cfg.input_size / side) ** 2
    return (
        f"the {side} px images are upsampled to {cfg.input_size} px, {cfg.model}'s input size ({ratio:.0f}x "
        "the pixels of each image to compute on; --input-size N asks for a smaller input)"
    )


def plan_lines(cfg: TrainConfig, run: Any, device: str, parameters: int) -> list[str]:
    steps = len(run.train_loader)
    sets = f"{_n(len(run.train_ds))} training"
    if run.test_loader is not None:
        sets += f", {_n(len(run.val_ds))} validation (held out), {_n(len(run.test_ds))} test images"
    else:
        sets += f", {_n(len(run.test_ds))} test images (also the validation set: no --val-split)"
    line = (
        f"plan: {cfg.recipe} recipe, {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} of {_n(steps)} steps "
        f"(batch {cfg.batch_size}) on "
        f"{device}; {sets}; {cfg.model}, {_n(parameters)} parameters"
    )
    notes = [n for n in (layout_note(cfg), upsample_note(cfg, run.train_ds)) if n]
    lines = [line + "".join(f"; {n}" for n in notes)]
    if device.startswith("cpu") and cfg.epochs > LONG_CPU_EPOCHS:
        lines.append(
            f"warning: {cfg.epochs} epochs on a CPU likely take hours (an estimate follows after a few "
            "steps); --epochs N or --recipe fast makes a shorter run, --stop-after N and --resume split it"
        )
    return lines


def resume_line(folder: Any, epoch: int, step: int, steps: int, epochs: int) -> str:
    """Where a resumed run goes on: `epoch` epochs and `step` steps of the next one were done."""
    if step:
        where = f"epoch {epoch + 1}/{epochs} at step {step + 1} of {_n(steps)} ({step} done before the stop)"
    else:
        where = f"epoch {epoch + 1}/{epochs}, step 1 ({epoch} epoch{'s' * (epoch != 1)} done)"
    return f"resumed from {folder}: continuing at {where}"


class Eta:
    """The whole run's remaining time: the remaining steps at this invocation's measured pace, plus the
    remaining evaluations at their measured length once one has been timed."""

    def __init__(self, total_steps: int, done_steps: int, epochs_left: int) -> None:
        self.total, self.done = total_steps, done_steps
        self.epochs_left = epochs_left
        self.seen = 0  # steps this invocation
        self.t0 = 0.0
        self.eval_seconds: list[float] = []
        self.evaluations = 0  # this invocation's
        self.excluded = 0.0  # evaluation time inside the timed span
        self.announced = False

    def step(self) -> None:
        self.done += 1
        self.seen += 1
        if self.seen == WARMUP_STEPS:
            self.t0 = time.perf_counter()

    def evaluated(self, seconds: float, compiling: bool = False) -> None:
        """An evaluation took `seconds`; one that also compiled (--compile) says nothing about the others'
        length and is left out of their estimate."""
        self.evaluations += 1
        if not compiling:
            self.eval_seconds.append(seconds)
        self.epochs_left -= 1
        if self.seen >= WARMUP_STEPS:
            self.excluded += seconds

    def remaining(self) -> float | None:
        timed = self.seen - WARMUP_STEPS
        if timed <= 0:
            return None
        pace = (time.perf_counter() - self.t0 - self.excluded) / timed
        evals = (
            sum(self.eval_seconds) / len(self.eval_seconds) * self.epochs_left if self.eval_seconds else 0.0
        )
        return pace * (self.total - self.done) + evals

    def announcement(self, epoch_over: bool = False) -> str | None:
        """The first estimate, once: after ETA_AFTER timed steps or at the first epoch's end."""
        if self.announced or not (self.seen - WARMUP_STEPS >= ETA_AFTER or epoch_over):
            return None
        left = self.remaining()
        if left is None or left < 0.05 or (self.done >= self.total and self.epochs_left <= 0):
            return None  # nothing left to estimate: no "about 0.0 s more"
        self.announced = True
        extra = "" if self.eval_seconds else " plus each epoch's evaluation"
        return f"eta: the whole run needs about {report.format_seconds(left)} more{extra}"
