"""Claim `relu-vs-tanh`: ReLU nets reach a training-error threshold several times faster (Figure 1)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from cnnlab.experiments import budget
from cnnlab.experiments.context import Experiment, describe, resolved
from cnnlab.experiments.paper import CLAIMS
from cnnlab.experiments.results import ClaimResult, plot_curves
from cnnlab.experiments.runner import Arm, Run
from cnnlab.experiments.verdict import INCONCLUSIVE, Verdict, compare, finite, mean, mean_std, pct

RELU = Arm("relu", "ReLU", {"activation": "relu"})
TANH = Arm("tanh", "tanh", {"activation": "tanh"})


def epochs_to(curve: Sequence[float], threshold: float, start: float) -> float:
    """Fractional epochs until the training error falls to `threshold`; inf if it never does.

    An epoch's training error is the mean over its steps, so it is placed at the epoch's middle (e - 0.5);
    the error starts at `start` (chance) at 0, and the crossing is interpolated linearly in between.
    """
    points = [(0.0, start)] + [(i + 0.5, float(v)) for i, v in enumerate(curve)]
    if start <= threshold:
        return 0.0
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if v1 <= threshold:
            return t0 + (v0 - threshold) / (v0 - v1) * (t1 - t0)
    return math.inf


def _epochs(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f} epochs"


def _speedups(relu: Sequence[float], tanh: Sequence[float]) -> list[float]:
    return [
        t / r for r, t in zip(relu, tanh, strict=True) if math.isfinite(r) and r > 0 and not math.isnan(t)
    ]


def run(exp: Experiment) -> ClaimResult:
    runs = exp.runner("plain").runs([RELU, TANH], exp.seeds)
    relus, tanhs = runs[RELU.name], runs[TANH.name]
    doc = resolved(relus[0])
    chance = 1.0 - 1.0 / len(doc["data"]["classes"])
    epochs, images = int(doc["config"]["epochs"]), int(doc["data"]["train"]["count"])
    thr = budget.threshold(exp.dataset)

    def reach(rs: Sequence[Run]) -> list[float]:
        return [math.nan if r.failed else epochs_to(r.curve("train_top1_err"), thr, chance) for r in rs]

    t_relu, t_tanh = reach(relus), reach(tanhs)
    # A run that never reached the threshold counts as the whole run: a lower bound on its time.
    cap = [min(t, float(epochs)) for t in t_relu], [min(t, float(epochs)) for t in t_tanh]
    what = f"epochs to {pct(thr)} training error"
    if not any(math.isfinite(t) for t in t_relu + t_tanh):
        verdict = Verdict(
            INCONCLUSIVE,
            f"neither net reached {pct(thr)} training error in {epochs} epochs; use a larger --budget",
        )
    else:
        verdict = compare(*cap, what=what, claimed_label="ReLU", other_label="tanh", fmt=_epochs)
    speed = _speedups(*cap)
    censored = any(math.isinf(t) for t in t_tanh)
    ratio = f"{'>' if censored else ''}{mean(speed):.1f}x" if speed and finite(t_relu) else "n/a"

    def took(ts: Sequence[float]) -> str:
        missed = sum(math.isinf(t) for t in ts)
        if not finite(ts):
            return f"not within {epochs} epochs"
        return mean_std(finite(ts), _epochs) + (f" ({missed} seed(s) not within {epochs})" if missed else "")

    ours = f"ReLU {took(t_relu)}, tanh {took(t_tanh)} to {pct(thr)} training error: ReLU {ratio} faster"
    rows = [["arm", what, "per seed", "images seen", "last-epoch training error", "wall seconds per epoch"]]
    for arm, rs, ts in (("ReLU", relus, t_relu), ("tanh", tanhs, t_tanh)):
        rows.append(
            [
                arm,
                took(ts),
                ", ".join(f"{t:.2f}" if math.isfinite(t) else f">{epochs}" for t in ts),
                f"{round(mean(finite(ts)) * images):,}" if finite(ts) else "n/a",
                mean_std([r.last("train_top1_err") for r in rs]),
                f"{mean([r.seconds / max(len(r.history), 1) for r in rs]):.1f}",
            ]
        )
    plot = "training_error.png"
    plot_curves(
        exp.folder / plot,
        {"ReLU": relus, "tanh": tanhs},
        [("train_top1_err", "training top-1 error")],
        title=f"Figure 1 at small scale ({exp.dataset})",
        hline=(thr, f"threshold {pct(thr)}"),
        x_shift=-0.5,
    )
    paper_thr = CLAIMS[exp.claim].values["threshold"]
    notes = [
        "Epochs are passes over the training subset; an epoch's training error is the mean over its "
        "steps (dropout is off), placed at the epoch's middle, and the crossing is interpolated.",
        "The paper tuned each net's learning rate for speed; here both use the same one, so the ratio "
        "compares the units, not each unit at its best learning rate.",
        "Wall seconds per epoch include whatever else the machine was running; the claim is in epochs.",
    ]
    if thr != paper_thr:
        notes.insert(
            0,
            f"The paper's threshold is {pct(paper_thr)} training error on CIFAR-10; for {exp.dataset} it is "
            f"{pct(thr)} (budget.THRESHOLDS), an error the nets reach part-way through the small budget.",
        )
    return ClaimResult(
        exp.claim,
        ours,
        verdict,
        describe(
            relus[0],
            "the activation (ReLU or tanh)",
            f"threshold: {pct(thr)} training top-1 error; seeds: {', '.join(map(str, exp.seeds))}",
        ),
        rows,
        plots=[plot],
        notes=notes,
        runs=[*relus, *tanhs],
        numbers={"threshold": thr, "epochs_relu": t_relu, "epochs_tanh": t_tanh, "speedup": speed},
    )
