"""Claims of the form "the paper's choice lowers the error" (LRN, overlapping pooling, PCA lighting): the
`standard` setting trained with and without the choice on the same seeds, compared on the test set.

Arms that share a seed share the data order, the augmentation stream (PCA lighting draws its coefficients
after the crops and flips, so turning it off leaves those unchanged) and the initial weights (LRN and the
pools have no parameters), so the effect per seed is a paired difference: test top-1 error without the choice
minus with it, at the last epoch (no epoch is selected, so nothing is chosen on the test set).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnnlab.experiments.context import Experiment, data_departure, one_cycle_words, run_length
from cnnlab.experiments.results import ClaimResult, plot_curves
from cnnlab.experiments.runner import Arm, Run
from cnnlab.experiments.sentences import difference, effect_sentence
from cnnlab.experiments.verdict import Interval, Verdict, judge, mean_std, pct, t_interval

# The `standard` setting as it is: the arm every standard-setting claim shares (see budget.py).
BASELINE = Arm("baseline", "baseline")


def err_on_test(run: Run, metric: str = "top1_err") -> float:
    """The run's last-epoch error on the test set (NaN for a failed run)."""
    return run.last(run.test(metric)) if run.history else float("nan")


def error_panels(run: Run) -> list[tuple[str, str]]:
    """The error curves a claim's plot draws (metrics column, panel title): the test set's only where the
    run scored it every epoch (claim runs score it at the last epoch alone), the held-out set's where the
    run held images out, and the training error."""
    keys = [("train_top1_err", "training top-1 error")]
    if run.held_out:
        keys.insert(0, (run.heldout("top1_err"), "held-out val top-1 error"))
    if run.history and all(math.isfinite(v) for v in run.curve(run.test("top1_err"))):
        keys.insert(0, (run.test("top1_err"), "test top-1 error"))
    return keys


def arm_rows(arms: Mapping[str, Sequence[Run]]) -> list[list[str]]:
    """Table rows: test top-1/top-5, held-out and training error at the last epoch (mean ± sd), per seed."""
    rows = [
        [
            "arm",
            "test top-1 error",
            "test top-5 error",
            "held-out val top-1",
            "train top-1",
            "test top-1 per seed",
        ]
    ]
    for label, runs in arms.items():
        top1 = [err_on_test(r) for r in runs]
        rows.append(
            [
                label,
                mean_std(top1),
                mean_std([err_on_test(r, "top5_err") for r in runs]),
                mean_std([r.last(r.heldout("top1_err")) for r in runs])
                if any(r.held_out for r in runs)
                else "(none)",
                mean_std([r.last("train_top1_err") for r in runs]),
                ", ".join(pct(v) if not r.failed else "failed" for v, r in zip(top1, runs, strict=True)),
            ]
        )
    return rows


def paired(on: Sequence[Run], off: Sequence[Run], metric: str = "top1_err") -> list[float]:
    """Per seed: `off`'s test error minus `on`'s (positive: the paper's choice helps); NaN if one failed."""
    return [err_on_test(b, metric) - err_on_test(a, metric) for a, b in zip(on, off, strict=True)]


def standard_departures(exp: Experiment, run: Run) -> list[str]:
    """How the `standard` setting departs from the paper's ImageNet training (section 5)."""
    c = run.config
    return [
        data_departure(exp, run),
        f"Model: {c.model} (AlexNet's layer pattern for small images), not the paper's "
        "60-million-parameter net on two GPUs.",
        f"{run_length(run)} instead of roughly 90 "
        "epochs (450,000 steps); "
        + (
            f"{one_cycle_words(c)} instead of section 5's lr 0.01 divided by 10 on plateaus: it brings the "
            "nets to their plateau within the budget; the architecture is the paper's (no batch norm)."
            if c.schedule == "onecycle"
            else "the plateau drops of the learning rate (decided on the held-out images) barely come into "
            "play."
        ),
        "Kaiming initialisation instead of N(0, 0.01) with biases of 1 (whether that trains "
        "here is the paper-init claim); per-channel normalisation instead of subtracting the mean image.",
        "Centre-crop test errors (the paper's are ten-crop); the last epoch, no model selection.",
    ]


def ablation(
    exp: Experiment,
    *,
    on_label: str,
    off: Arm,
    varied: str,
    protocol: str,
    paper_effect: float,
    paper_source: str,
    departures: Sequence[str] = (),
    notes: Sequence[str] = (),
    setting: str = "standard",
    on: Arm | None = None,
    base_departures: Callable[[Experiment, Run], list[str]] | None = None,
    rule: Callable[[Interval, str], Verdict] | None = None,
    change: str | None = None,
    where: str = "ImageNet",
) -> ClaimResult:
    """Train the baseline (the paper's choice, shown as `on_label`) and `off` on every seed; judge the
    paired last-epoch test top-1 differences against zero and against `paper_effect` (in error points).

    The successors' claims pass their own `setting`, `on` arm (its settings on top of the setting),
    the departures of that setting, and for a claim of no effect their own `rule`. `change` opens the
    claim's sentence ("With LRN"), `where` names the paper's data set for its size."""
    # The shared baseline run by default, so claims that compare with it reuse it.
    on = Arm(BASELINE.name, on_label) if on is None else on
    runs = exp.runner(setting).runs([on, off], exp.seeds)
    ons, offs = runs[on.name], runs[off.name]
    gain1, gain5 = paired(ons, offs), paired(ons, offs, "top5_err")
    iv, iv5 = t_interval(gain1), t_interval(gain5)
    dropped = sum(g != g for g in gain1)
    what = f"test top-1 error with {off.label} minus with {on.label}"
    if rule is not None:
        verdict = rule(iv, what)
    else:
        verdict = judge(iv, what=what, paper=paper_effect, dropped=dropped)
    ours = effect_sentence(
        change=change or f"With {on.label} rather than {off.label}",
        subject=exp.nets(),
        iv=iv,
        paper=paper_effect if rule is None else None,  # a claim of no effect has no size to match
        where=where,
        tail=f" on {exp.dataset}",
    ) + (
        f" Test top-1: {on.label} {mean_std([err_on_test(r) for r in ons])}, {off.label} "
        f"{mean_std([err_on_test(r) for r in offs])}; top-5: {difference(iv5)}."
    )
    labelled = {on.label: ons, off.label: offs}
    plot = "curves.png"
    keys = error_panels(ons[0])
    plot_curves(
        exp.folder / plot,
        labelled,
        keys,
        title=f"{on.label} vs {off.label} ({exp.dataset}, {seeds_text(len(exp.seeds))})",
    )
    return exp.result(
        ours,
        verdict,
        arm_rows(labelled),
        ran=(ons[0], varied, f"paired seeds: {', '.join(map(str, exp.seeds))} (each arm)"),
        protocol=protocol,
        departures=[*(base_departures or standard_departures)(exp, ons[0]), *departures],
        plots=[plot],
        notes=[
            f"The paper's effect size{' used by the verdict' if rule is None else ''}: "
            f"{100 * paper_effect:.1f} points of top-1 error ({paper_source}).",
            "Paired seeds: each seed's two runs share the data order, the augmentation stream and the "
            "initial weights, so the interval is over the per-seed differences.",
            *notes,
        ],
        runs=[*ons, *offs],
        numbers=_numbers(on, off, ons, offs, gain1, gain5, iv, iv5, paper_effect),
    )


def _numbers(
    on: Arm, off: Arm, ons: Sequence[Run], offs: Sequence[Run], gain1: list[float], gain5: list[float],
    iv: Any, iv5: Any, paper_effect: float,
) -> dict[str, Any]:  # fmt: skip
    return {
        "on": {"label": on.label, "test_top1_err": [err_on_test(r) for r in ons]},
        "off": {"label": off.label, "test_top1_err": [err_on_test(r) for r in offs]},
        "top1_gain_per_seed": gain1,
        "top5_gain_per_seed": gain5,
        "top1_gain": {"mean": iv.mean, "ci95": [iv.low, iv.high], "seeds": iv.n},
        "top5_gain": {"mean": iv5.mean, "ci95": [iv5.low, iv5.high], "seeds": iv5.n},
        "paper_top1_gain": paper_effect,
    }


def seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"
