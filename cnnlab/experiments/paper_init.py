"""Claim `paper-init`: does the paper's N(0, 0.01) init with biases of 1 train (section 5)?

The paper's protocol: weights from N(0, 0.01); biases of conv2, conv4, conv5 and the hidden fully connected
layers 1 ("provides the ReLUs with positive inputs"), the others 0; SGD at lr 0.01, divided by 10 when the
validation error stopped improving. Caffe's reference model reported a flat loss with bias 1 and used 0.1;
Kaiming's init is what modern code uses. Each arm is the `init` setting with one init scheme; a run
"trains" when its held-out validation error gets below `TRAINS_BELOW` of chance (a flat loss stays at
chance), and it *leaves chance* at the first epoch where it does. The verdict counts seeds (the paper's
claim is that the net trains at all); budgets that afford it hold the paper's lr 0.01 constant for long.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cnnlab.experiments.ablation import BASELINE, arm_rows, err_on_test, standard_departures
from cnnlab.experiments.context import Experiment
from cnnlab.experiments.results import ClaimResult, plot_curves
from cnnlab.experiments.runner import Arm, Run
from cnnlab.experiments.verdict import CONTRADICTED, INCONCLUSIVE, REPRODUCED, Verdict, mean_std, pct

PAPER = Arm("init-paper", "paper (N(0, 0.01), bias 1)", {"init": "paper"})
BIAS01 = Arm("init-paper-bias01", "Caffe (N(0, 0.01), bias 0.1)", {"init": "paper_bias01"})
KAIMING = Arm(BASELINE.name, "Kaiming")
TRAINS_BELOW = 0.8
PROTOCOL = (
    "section 5: weights from N(0, 0.01), biases 1 in conv2, conv4, conv5 and the hidden fully connected "
    "layers and 0 elsewhere, SGD at lr 0.01 (divided by 10 on plateaus), about 90 epochs; the net trains."
)


def leaves_chance(run: Run, chance: float) -> float:
    """The first epoch (1-based) whose held-out validation error is below TRAINS_BELOW of chance; inf if
    none (or the run failed)."""
    if run.failed or not run.history:
        return math.inf
    bar = TRAINS_BELOW * chance
    return next((float(i + 1) for i, v in enumerate(run.curve(run.heldout("top1_err"))) if v < bar), math.inf)


def trains(run: Run, chance: float) -> bool:
    return math.isfinite(leaves_chance(run, chance))


def judge(
    flags: Sequence[bool], chance: float, control: Sequence[bool] = (), same_scale: Sequence[bool] = ()
) -> Verdict:
    """Reproduced if the paper's init trained in every seed, contradicted if in none; inconclusive when
    the `control` arm (Kaiming) did not train in every seed either, or when the paper's init failed and
    so did `same_scale` (the same N(0, 0.01) weights with Caffe's bias 0.1) in every seed: then the budget
    is too short for weights that small to start learning, whatever the bias, and says nothing about
    bias 1 in particular."""
    n, k = len(flags), sum(flags)
    bar = f"held-out validation error below {pct(TRAINS_BELOW * chance)} (chance: {pct(chance)})"
    if control and not all(control):
        return Verdict(
            INCONCLUSIVE,
            f"the Kaiming control trained in only {sum(control)} of {len(control)} seeds ({bar}), so the "
            f"budget is too small to tell whether the paper's init trains (it did in {k} of {n})",
        )
    if k == 0 and same_scale and not any(same_scale):
        return Verdict(
            INCONCLUSIVE,
            f"neither the paper's init nor the same N(0, 0.01) weights with Caffe's bias 0.1 trained in any "
            f"of {n} seeds ({bar}) while Kaiming's did: this budget is too short for weights that small to "
            "start learning, so it cannot tell whether bias 1 is the problem (a longer run would)",
        )
    if n and k == n:
        return Verdict(REPRODUCED, f"the paper's init trained in all {n} seeds ({bar})")
    if k == 0:
        return Verdict(
            CONTRADICTED,
            f"the paper's init did not train in any of {n} seeds ({bar}), as Caffe's reference model "
            "reported" + (" (its bias 0.1 variant did)" if same_scale else ""),
        )
    return Verdict(INCONCLUSIVE, f"the paper's init trained in {k} of {n} seeds ({bar})")


def _when(times: Sequence[float], epochs: int, steps: int) -> str:
    """When each seed left chance, in steps (`steps` an epoch; held-out errors are read at epoch ends)."""
    return ", ".join(
        f"by step {round(t) * steps:,} (epoch {t:.0f})"
        if math.isfinite(t)
        else f"never within {epochs * steps:,} steps ({epochs} epochs)"
        for t in times
    )


def run(exp: Experiment) -> ClaimResult:
    arms = [PAPER, BIAS01, KAIMING]
    runs = exp.runner("init").runs(arms, exp.seeds)
    c, data = runs[KAIMING.name][0].config, runs[KAIMING.name][0].record["data"]
    chance = 1.0 - 1.0 / len(data["classes"])
    epochs = c.epochs
    steps = max(1, int(data["train"]["count"]) // c.batch_size)  # training drops the last partial batch
    left = {a.name: [leaves_chance(r, chance) for r in runs[a.name]] for a in arms}
    flags = {a.name: [math.isfinite(t) for t in left[a.name]] for a in arms}
    verdict = judge(flags[PAPER.name], chance, flags[KAIMING.name], flags[BIAS01.name])
    err = {a.name: [err_on_test(r) for r in runs[a.name]] for a in arms}
    k, n = sum(flags[PAPER.name]), len(flags[PAPER.name])
    ours = (
        f"At the paper's lr {c.lr:g} ({c.schedule}), {exp.model} nets with the paper's init (N(0, 0.01), "
        f"biases of 1) left chance in {k} of {n} seed{'s' if n != 1 else ''} "
        f"within {epochs * steps:,} steps. "
        + "; ".join(
            f"{a.label.split(' (')[0]}: {_when(left[a.name], epochs, steps)}, "
            f"test top-1 {mean_std(err[a.name])}"
            for a in arms
        )
        + "."
    )
    labelled = {a.label: runs[a.name] for a in arms}
    rows = arm_rows(labelled)
    rows[0] += ["trained", "leaves chance"]
    for row, a in zip(rows[1:], arms, strict=True):
        first = [r.curve("train_loss")[0] for r in runs[a.name] if r.history]
        row.append(
            f"{sum(flags[a.name])}/{len(flags[a.name])}"
            + (f" (first-epoch loss {sum(first) / len(first):.3f})" if first else "")
        )
        row.append(_when(left[a.name], epochs, steps))
    plot = "curves.png"
    first_run = runs[KAIMING.name][0]
    plot_curves(
        exp.folder / plot,
        labelled,
        [("train_loss", "training loss"), (first_run.heldout("top1_err"), "validation top-1 error")],
        title=f"initialisation schemes ({exp.dataset})",
        hline=(TRAINS_BELOW * chance, f"{TRAINS_BELOW:.0%} of chance"),
    )
    failed = [r for a in arms for r in runs[a.name] if r.failed]
    departures = [
        *standard_departures(exp, first_run)[:2],
        f"{epochs} epochs (about {epochs * data['train']['count'] // c.batch_size:,} steps) at lr "
        f"{c.lr} ({c.schedule}), not about 90 epochs"
        + (
            "; the paper's lr held constant so no drop comes while a net sits at chance"
            if c.schedule == "constant"
            else ""
        ),
        "The verdict counts the seeds that train; it does not compare how well.",
    ]
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
    return exp.result(
        ours,
        verdict,
        rows,
        ran=(
            first_run,
            "the initialisation (weights and biases)",
            f"seeds: {', '.join(map(str, exp.seeds))} (each arm)",
        ),
        protocol=PROTOCOL,
        departures=departures,
        plots=[plot],
        notes=notes,
        runs=[r for a in arms for r in runs[a.name]],
        numbers={
            a.name: {
                "test_top1_err": err[a.name],
                "trained": flags[a.name],
                "leaves_chance_epoch": left[a.name],
                "leaves_chance_step": [t * steps if math.isfinite(t) else None for t in left[a.name]],
                "steps_run": epochs * steps,
            }
            for a in arms
        },
    )
