"""Claim `dropout`: dropout stops overfitting and roughly doubles the iterations to converge (section 4.2).

Overfitting is measured as the gap between the validation error and the error on the very images the
net trained on, both in eval mode (the training error logged during an epoch runs with dropout on,
which would flatter the dropout arm). Convergence is the first epoch whose validation error is within
`TOLERANCE` of the run's best.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.experiments.context import Experiment, describe
from cnnlab.experiments.results import ClaimResult, plot_curves
from cnnlab.experiments.runner import Arm, Run, evaluate_run
from cnnlab.experiments.verdict import combine, compare, mean, mean_std, points

DROPOUT = Arm("dropout", "dropout 0.5", {"dropout": 0.5})
NO_DROPOUT = Arm("no-dropout", "no dropout", {"dropout": 0.0})
TOLERANCE = (0.005, 0.05)  # within max(0.5 points, 5% of the best error) of the best counts as converged


def converged_epoch(val_err: Sequence[float]) -> float:
    """The first epoch (1-based) whose validation error is within the tolerance of the run's best."""
    best = min(val_err)
    tol = max(TOLERANCE[0], TOLERANCE[1] * best)
    return float(next(i + 1 for i, v in enumerate(val_err) if v <= best + tol))


def _epochs(x: float) -> str:
    return f"{x:.1f} epochs"


def _measure(r: Run) -> dict[str, float]:
    if r.failed or not r.history:
        nan = float("nan")
        return {"train_err": nan, "val_err": nan, "gap": nan, "converged": nan, "val_loss_rise": nan}
    train_err = float(evaluate_run(r, split="train")["top1_err"])
    val_err = r.last("val_top1_err")
    losses = r.curve("val_loss")
    return {
        "train_err": train_err,
        "val_err": val_err,
        "gap": val_err - train_err,
        "converged": converged_epoch(r.curve("val_top1_err")),
        "val_loss_rise": losses[-1] - min(losses),
    }


def run(exp: Experiment) -> ClaimResult:
    runs = exp.runner("overfit").runs([DROPOUT, NO_DROPOUT], exp.seeds)
    drop = [_measure(r) for r in runs[DROPOUT.name]]
    plain = [_measure(r) for r in runs[NO_DROPOUT.name]]

    def col(ms: list[dict[str, float]], key: str) -> list[float]:
        return [m[key] for m in ms]

    gap = compare(
        col(drop, "gap"),
        col(plain, "gap"),
        what="overfitting gap (validation minus training error)",
        claimed_label="dropout",
        other_label="no dropout",
    )
    slower = compare(
        col(plain, "converged"),
        col(drop, "converged"),
        what="epochs to converge",
        claimed_label="no dropout",
        other_label="dropout",
        fmt=_epochs,
    )
    verdict = combine([("less overfitting", gap), ("more epochs to converge", slower)])
    ratio = mean(col(drop, "converged")) / mean(col(plain, "converged"))
    ours = (
        f"gap {mean_std(col(plain, 'gap'))} without -> {mean_std(col(drop, 'gap'))} with dropout; "
        f"converged after {mean(col(plain, 'converged')):.1f} -> {mean(col(drop, 'converged')):.1f} epochs "
        f"({ratio:.1f}x)"
    )
    rows = [
        [
            "arm",
            "training error (eval mode)",
            "validation error",
            "gap",
            "val loss rise from its minimum",
            "epochs to converge",
        ]
    ]
    for label, ms in (("no dropout", plain), ("dropout 0.5", drop)):
        rows.append(
            [
                label,
                mean_std(col(ms, "train_err")),
                mean_std(col(ms, "val_err")),
                mean_std(col(ms, "gap")),
                mean_std(col(ms, "val_loss_rise"), lambda x: f"{x:.3f}"),
                mean_std(col(ms, "converged"), _epochs),
            ]
        )
    plot = "curves.png"
    plot_curves(
        exp.folder / plot,
        {"no dropout": runs[NO_DROPOUT.name], "dropout 0.5": runs[DROPOUT.name]},
        [
            ("val_top1_err", "validation top-1 error"),
            ("val_loss", "validation loss"),
            ("train_loss", "training loss (dropout on)"),
        ],
        title=f"dropout on a small training set ({exp.dataset})",
    )
    tol = f"max({points(TOLERANCE[0])}, {TOLERANCE[1]:.0%} of the best)"
    return ClaimResult(
        exp.claim,
        ours,
        verdict,
        describe(
            runs[DROPOUT.name][0],
            "the dropout rate of the fully connected layers (0.5 or 0)",
            f"seeds: {', '.join(map(str, exp.seeds))} (each arm)",
        ),
        rows,
        plots=[plot],
        notes=[
            "Few images and no augmentation make the net overfit within the budget, as the paper's "
            "60-million-parameter net overfits ImageNet without dropout.",
            "The gap uses the training subset re-evaluated in eval mode at the end (dropout off), not "
            "the running training error, which dropout inflates.",
            f"Converged: the first epoch whose validation error is within {tol} of the run's best. The "
            "paper counts iterations; with a fixed batch, epochs are proportional to them.",
        ],
        runs=[*runs[DROPOUT.name], *runs[NO_DROPOUT.name]],
        numbers={"dropout": drop, "no_dropout": plain, "converge_ratio": ratio},
    )
