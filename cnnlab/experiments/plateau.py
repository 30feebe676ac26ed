"""Trained, not started (docs/claims.md, the plateau rule): whether a run's held-out error had stopped
improving, and each arm's final test error beside a full-data reference for its net.

The criterion (`on_plateau`): a run is on its plateau when the best held-out error of its last `WINDOW`
epochs is at most `MARGIN` below its best before them, i.e. those epochs improved on what came before by no
more than the margin. It reads the held-out columns only (a choice, never the test set). A run with fewer
than `WINDOW` + 1 epochs, or a NaN among the epochs it reads, cannot be judged (None).

Which runs it suits: those whose last epochs keep one learning rate. A constant-rate run does; a one-cycle
run falling to zero does not (its error falls as long as its rate does, however long it trains), so the
trained budgets end theirs holding a floor rate for exactly `WINDOW` epochs (`budget.HOLD_EPOCHS`): the
check then asks section 5's question, whether "the validation error rate stopped improving with the
current learning rate".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnnlab.experiments.budget import HOLD_EPOCHS
from cnnlab.experiments.runner import Run
from cnnlab.experiments.verdict import mean, mean_std, pct

WINDOW = HOLD_EPOCHS  # the last epochs the criterion looks at: a trained one-cycle run's held ones
MARGIN = 0.005  # 0.5 points of held-out top-1 error
_EPS = 1e-12  # a difference "exactly the margin" computed in floating point still counts as within it

# Full-data references: the test top-1 error of the same net trained on the whole training set, with how it
# was measured. A net without an entry shows "not measured". Keys: (model, data set).
REFERENCES: dict[tuple[str, str], tuple[float, str]] = {
    # docs/training.md, "Test accuracy, the full 60,000 training images": `cnnlab train --model
    # alexnet_small --dataset fashion-mnist --recipe fast --epochs 5`, near-quiet, 92.84% accuracy. The fast
    # recipe gives it batch norm in place of LRN: the nearest measured net, not the claims' own.
    ("alexnet_small", "fashion-mnist"): (
        0.0716,
        "the nearest measured: with batch norm in place of LRN, the fast recipe, 5 epochs on all 60,000 "
        "images, docs/training.md",
    ),
}


def criterion(window: int = WINDOW, margin: float = MARGIN) -> str:
    """The criterion in words, for every report."""
    return (
        f"on its plateau: the best held-out top-1 error of its last {window} epochs is at most "
        f"{100 * margin:.1f} points below its best before them (those epochs improved by no more than that; "
        "a one-cycle run holds its floor learning rate through them)"
    )


def on_plateau(curve: Sequence[float], window: int = WINDOW, margin: float = MARGIN) -> bool | None:
    """Whether the last `window` epochs of a held-out error curve improved by no more than `margin` on
    the epochs before them; None when it cannot be told (too few epochs, a NaN)."""
    if window < 1 or len(curve) < window + 1:
        return None
    values = [float(v) for v in curve]
    if any(math.isnan(v) for v in values):
        return None
    before, last = min(values[:-window]), min(values[-window:])
    return before - last <= margin + _EPS


def run_on_plateau(run: Run) -> bool | None:
    """`on_plateau` of a run's held-out top-1 error; None for a failed or empty run."""
    if run.failed or not run.history:
        return None
    return on_plateau(run.curve(run.heldout("top1_err")))


def reference(model: str, dataset: str) -> tuple[float, str] | None:
    return REFERENCES.get((model, dataset))


def _plateau_cell(flags: Sequence[bool | None]) -> str:
    known = [f for f in flags if f is not None]
    if not known:
        return "cannot tell (too few epochs)"
    text = f"{sum(known)} of {len(known)} seeds"
    return text + (f" ({len(flags) - len(known)} too short to tell)" if len(known) < len(flags) else "")


def table(arms: Mapping[str, Sequence[Run]]) -> tuple[str, list[list[str]], dict[str, Any]]:
    """The "trained to its plateau?" table of a report (title, rows) and its numbers for result.json."""
    rows = [["arm", "final test top-1 error", "full-data reference (same net)", "last epochs on the plateau"]]
    numbers: dict[str, Any] = {}
    for label, runs in arms.items():
        if not runs:
            continue
        errs = [r.last(r.test("top1_err")) for r in runs]
        flags = [run_on_plateau(r) for r in runs]
        c = runs[0].config
        ref = reference(c.model, c.dataset)
        rows.append(
            [
                label,
                mean_std(errs),
                f"{pct(ref[0])} ({ref[1]})" if ref else f"not measured ({c.model} on {c.dataset})",
                _plateau_cell(flags),
            ]
        )
        numbers[label] = {
            "model": c.model,
            "test_top1_err": errs,
            "mean_test_top1_err": mean(errs),
            "on_plateau": flags,
            "reference_test_top1_err": ref[0] if ref else None,
        }
    title = f"Trained to its plateau? Each arm's final test error, and whether each run was {criterion()}"
    return title, rows, numbers


def early_caveat(runs: Sequence[Run]) -> str:
    """The caveat of a budget whose nets stop early (docs/claims.md), with the error they reached: the
    mean final test error of the standard baseline's runs among `runs` (every arm's when there is none),
    measured, never assumed."""
    unique = {r.dir: r for r in runs if r.history and not r.failed and not r.arm.name.startswith("search-")}
    base = [r for r in unique.values() if r.arm.name == "baseline"] or list(unique.values())
    err = mean([r.last(r.test("top1_err")) for r in base])
    which = "the standard baseline's" if any(r.arm.name == "baseline" for r in base) else "every arm's"
    return (
        f"Early training: nets at {pct(err)} test error ({which} mean, last epoch). These verdicts are "
        "about how each arm starts, not about trained nets (the paper's numbers are after ~90 epochs); "
        "`--budget medium` trains them much further (its baseline to about 12% test error)."
    )


TARGET = 0.12  # the standard arm's test error a trained budget must reach (issue 22: at or below 12%)


def trained_summary(runs: Sequence[Run], baselines: Sequence[Run]) -> str:
    """A trained budget's check, for the index's first lines: the standard baseline's final test error
    (`baselines`: the standard setting's "baseline" runs; paper-init's Kaiming control has that arm name
    too, in a setting of its own) against `TARGET`, and how many of `runs` were on their plateau."""
    unique = {r.dir: r for r in runs if not r.arm.name.startswith("search-")}
    base = list({r.dir: r for r in baselines if r.history and not r.failed}.values())
    flags = [run_on_plateau(r) for r in unique.values()]
    known = [f for f in flags if f is not None]
    err = mean([r.last(r.test("top1_err")) for r in base])
    met = "met" if err <= TARGET else f"NOT met, {100 * (err - TARGET):.2f} points above it"
    head = (
        f"Trained: the standard baseline ends at {pct(err)} test error "
        f"(mean of {len(base)} seeds; target {pct(TARGET)} or less: {met}). "
        if base
        else ""
    )
    return (
        f"{head}{sum(known)} of {len(known)} runs were on their plateau (a run is {criterion()})"
        + (f"; {len(flags) - len(known)} could not be told" if len(known) < len(flags) else "")
        + "."
    )
