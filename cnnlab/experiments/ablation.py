"""Claims of the form "the paper's choice lowers the validation error" (LRN, overlapping pooling, PCA
lighting): the `standard` setting trained with and without the choice, compared at the last epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cnnlab.experiments.context import Experiment, describe
from cnnlab.experiments.results import ClaimResult, plot_curves
from cnnlab.experiments.runner import Arm, Run
from cnnlab.experiments.verdict import compare, mean, mean_std, pct, plural

# The `standard` setting as it is: the arm every standard-setting claim shares (see budget.py).
BASELINE = Arm("baseline", "baseline")


def signed_points(x: float) -> str:
    return f"{100 * x:+.2f} points"


def arm_rows(arms: Mapping[str, Sequence[Run]]) -> list[list[str]]:
    """Table rows: validation top-1/top-5 and training error at the last epoch, mean ± std, per seed."""
    rows = [["arm", "val top-1 error", "val top-5 error", "train top-1 error", "val top-1 per seed"]]
    for label, runs in arms.items():
        top1 = [r.last("val_top1_err") for r in runs]
        rows.append(
            [
                label,
                mean_std(top1),
                mean_std([r.last("val_top5_err") for r in runs]),
                mean_std([r.last("train_top1_err") for r in runs]),
                ", ".join(pct(v) if not r.failed else "failed" for v, r in zip(top1, runs, strict=True)),
            ]
        )
    return rows


def ablation(
    exp: Experiment, *, on_label: str, off: Arm, varied: str, notes: Sequence[str] = ()
) -> ClaimResult:
    """Train the baseline (the paper's choice, shown as `on_label`) and `off` for every seed; judge the
    last-epoch val top-1 error."""
    on = Arm(BASELINE.name, on_label)  # the shared baseline run, so claims that compare with it reuse it
    runs = exp.runner("standard").runs([on, off], exp.seeds)
    ons, offs = runs[on.name], runs[off.name]
    top1_on = [r.last("val_top1_err") for r in ons]
    top1_off = [r.last("val_top1_err") for r in offs]
    top5_on = [r.last("val_top5_err") for r in ons]
    top5_off = [r.last("val_top5_err") for r in offs]
    verdict = compare(
        top1_on, top1_off, what="validation top-1 error", claimed_label=on.label, other_label=off.label
    )
    diff1, diff5 = mean(top1_on) - mean(top1_off), mean(top5_on) - mean(top5_off)
    ours = (
        f"{on.label} {mean_std(top1_on)} vs {off.label} {mean_std(top1_off)} val top-1 "
        f"({signed_points(diff1)} top-1, {signed_points(diff5)} top-5)"
    )
    labelled = {on.label: ons, off.label: offs}
    plot = "curves.png"
    plot_curves(
        exp.folder / plot,
        labelled,
        [("val_top1_err", "validation top-1 error"), ("train_top1_err", "training top-1 error")],
        title=f"{on.label} vs {off.label} ({exp.dataset}, {plural(len(exp.seeds), 'seed')})",
    )
    return ClaimResult(
        exp.claim,
        ours,
        verdict,
        describe(ons[0], varied, f"seeds: {', '.join(map(str, exp.seeds))} (each arm)"),
        arm_rows(labelled),
        plots=[plot],
        notes=list(notes),
        runs=[*ons, *offs],
        numbers={
            "on": {"label": on.label, "val_top1_err": top1_on, "val_top5_err": top5_on},
            "off": {"label": off.label, "val_top1_err": top1_off, "val_top5_err": top5_off},
            "top1_change": diff1,
            "top5_change": diff5,
        },
    )
