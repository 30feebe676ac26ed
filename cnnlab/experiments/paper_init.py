"""Claim `paper-init`: does the paper's N(0, 0.01) init with biases of 1 train (section 5)?

Caffe's reference model reported a flat loss with bias 1 and used 0.1; Kaiming's init is what modern code
uses. Each arm is the `standard` setting with one init; a run "trains" when its best validation error
gets below `TRAINS_BELOW` of the chance error (a flat loss stays at chance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cnnlab.experiments.ablation import BASELINE, arm_rows
from cnnlab.experiments.context import Experiment, describe, resolved
from cnnlab.experiments.results import ClaimResult, plot_curves
from cnnlab.experiments.runner import Arm, Run
from cnnlab.experiments.verdict import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    Verdict,
    compare,
    mean_std,
    pct,
)

PAPER = Arm("init-paper", "paper (N(0, 0.01), bias 1)", {"init": "paper"})
BIAS01 = Arm("init-paper-bias01", "Caffe (N(0, 0.01), bias 0.1)", {"init": "paper_bias01"})
KAIMING = Arm(BASELINE.name, "Kaiming")
TRAINS_BELOW = 0.8


def trains(run: Run, chance: float) -> bool:
    if run.failed or not run.history:
        return False
    return min(run.curve("val_top1_err")) < TRAINS_BELOW * chance


def judge(
    flags: Sequence[bool], chance: float, control: Sequence[bool] = (), same_scale: Sequence[bool] = ()
) -> Verdict:
    """Reproduced if the paper's init trained in every seed, not reproduced if in none; inconclusive when
    the `control` arm (Kaiming) did not train in every seed either, or when the paper's init failed and
    so did `same_scale` (the same N(0, 0.01) weights with Caffe's bias 0.1) in every seed: then the budget
    is too short for weights that small to start learning, whatever the bias, and says nothing about
    bias 1 in particular."""
    n, k = len(flags), sum(flags)
    bar = f"best validation error below {pct(TRAINS_BELOW * chance)} (chance: {pct(chance)})"
    if control and not all(control):
        return Verdict(
            INCONCLUSIVE,
            f"the Kaiming control trained in only {sum(control)} of {len(control)} seeds ({bar}), so the "
            "budget is too small to tell whether the paper's init trains (it did in "
            f"{k} of {n})",
        )
    if k == 0 and same_scale and not any(same_scale):
        return Verdict(
            INCONCLUSIVE,
            f"neither the paper's init nor the same N(0, 0.01) weights with Caffe's bias 0.1 trained in any "
            f"of {n} seeds ({bar}) while Kaiming's did: this budget is too short for weights that small to "
            "start learning, so it cannot tell whether bias 1 is the problem (use --budget full)",
        )
    if n and k == n:
        return Verdict(REPRODUCED, f"the paper's init trained in all {n} seeds ({bar})")
    if k == 0:
        return Verdict(
            NOT_REPRODUCED,
            f"the paper's init did not train in any of {n} seeds ({bar}), as "
            "Caffe's reference model reported" + (" (its bias 0.1 variant did)" if same_scale else ""),
        )
    return Verdict(INCONCLUSIVE, f"the paper's init trained in {k} of {n} seeds ({bar})")


def run(exp: Experiment) -> ClaimResult:
    arms = [PAPER, BIAS01, KAIMING]
    runs = exp.runner("standard").runs(arms, exp.seeds)
    chance = 1.0 - 1.0 / len(resolved(runs[KAIMING.name][0])["data"]["classes"])
    flags = {a.name: [trains(r, chance) for r in runs[a.name]] for a in arms}
    verdict = judge(flags[PAPER.name], chance, flags[KAIMING.name], flags[BIAS01.name])
    err = {a.name: [r.last("val_top1_err") for r in runs[a.name]] for a in arms}
    against = [
        compare(
            err[PAPER.name],
            err[other.name],
            what="validation top-1 error",
            claimed_label="the paper's init",
            other_label=other.label,
        )
        for other in (BIAS01, KAIMING)
    ]
    verdict = Verdict(
        verdict.verdict,
        verdict.reason + ". How well it trains: " + "; ".join(v.reason for v in against),
    )
    ours = (
        "; ".join(
            f"{a.label.split(' (')[0]} {mean_std(err[a.name])} "
            f"({sum(flags[a.name])}/{len(flags[a.name])} trained)"
            for a in arms
        )
        + " val top-1"
    )
    labelled = {a.label: runs[a.name] for a in arms}
    rows = arm_rows(labelled)
    rows[0].append("trained")
    for row, a in zip(rows[1:], arms, strict=True):
        first = [r.curve("train_loss")[0] for r in runs[a.name] if r.history]
        row.append(
            f"{sum(flags[a.name])}/{len(flags[a.name])}"
            + (f" (first-epoch loss {sum(first) / len(first):.3f})" if first else "")
        )
    plot = "curves.png"
    plot_curves(
        exp.folder / plot,
        labelled,
        [("train_loss", "training loss"), ("val_top1_err", "validation top-1 error")],
        title=f"initialisation schemes ({exp.dataset})",
    )
    failed = [r for a in arms for r in runs[a.name] if r.failed]
    notes = [
        f"Chance: the loss of a net that learnt nothing is ln({round(1 / (1 - chance))}) = "
        f"{math.log(1 / (1 - chance)):.3f}; a flat loss stays there.",
        "Bias 1 goes to the model's counterparts of the paper's conv2, conv4, conv5, fc6 and fc7 (marked "
        "in cnnlab/models/alexnet.py); all other biases are 0.",
        "Caffe's finding was on the full AlexNet (8 layers, 227 px); a shallower net passes a signal "
        "through N(0, 0.01) weights more easily, so a small-scale success does not contradict it.",
    ]
    if failed:
        notes.append(
            f"{len(failed)} run(s) diverged (non-finite loss): {', '.join(r.dir.name for r in failed)}"
        )
    return ClaimResult(
        exp.claim,
        ours,
        verdict,
        describe(
            runs[KAIMING.name][0],
            "the initialisation (weights and biases)",
            f"seeds: {', '.join(map(str, exp.seeds))} (each arm)",
        ),
        rows,
        plots=[plot],
        notes=notes,
        runs=[r for a in arms for r in runs[a.name]],
        numbers={a.name: {"val_top1_err": err[a.name], "trained": flags[a.name]} for a in arms},
    )
