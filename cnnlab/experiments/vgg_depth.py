"""Claim `vgg-depth`: deeper VGG configurations classify better (Simonyan & Zisserman, Table 3).

The paper's protocol (section 4.1, Table 3): configurations A (11 weight layers), B (13) and D (16), each
trained on ImageNet, tested at a single scale: top-1 error 29.6% -> 28.7% -> 27.0%. Ours: `vgg_small` in
configurations A, B and D at the same width scaling, trained on the same seeds (same data order and
augmentation; the nets differ in shape, so their initial weights cannot be shared). The effect per seed is
A's test top-1 error minus D's (positive: depth helps), judged against the paper's 2.6 points; B's
difference from A is shown with its own interval (the paper's 0.9 points).
"""

from __future__ import annotations

from cnnlab.experiments.ablation import arm_rows, err_on_test, error_panels, seeds_text
from cnnlab.experiments.context import Experiment
from cnnlab.experiments.paper import CLAIMS
from cnnlab.experiments.results import ClaimResult, plot_curves
from cnnlab.experiments.sentences import effect_sentence
from cnnlab.experiments.successors import SETTING, departures, vgg_arm
from cnnlab.experiments.verdict import judge, mean_std, primary, t_interval

MODEL = "vgg_small"
PROTOCOL = (
    "section 4.1, Table 3: configurations A (11 weight layers), B (13) and D (16) trained on ImageNet and "
    "tested at a single scale; top-1 / top-5 validation error 29.6/10.4, 28.7/9.9 and 27.0/8.8."
)


def run(exp: Experiment) -> ClaimResult:
    v = CLAIMS[exp.claim].values
    arms = [vgg_arm("A"), vgg_arm("B"), vgg_arm("D")]
    runs = exp.runner(SETTING).runs(arms, exp.seeds)
    a, b, d = (runs[arm.name] for arm in arms)
    gain_d = [err_on_test(x) - err_on_test(y) for x, y in zip(a, d, strict=True)]
    gain_b = [err_on_test(x) - err_on_test(y) for x, y in zip(a, b, strict=True)]
    iv_d, iv_b = t_interval(gain_d), t_interval(gain_b)
    paper_d, paper_b = v["A"] - v["D"], v["A"] - v["B"]
    verdict = primary(
        [
            ("A vs D", judge(iv_d, what="test top-1 error of A minus D", paper=paper_d,
                             dropped=sum(g != g for g in gain_d))),
            ("A vs B", judge(iv_b, what="test top-1 error of A minus B", paper=paper_b,
                             dropped=sum(g != g for g in gain_b))),
        ]
    )  # fmt: skip
    labelled = {arm.label: runs[arm.name] for arm in arms}
    subject, tail = exp.nets(), f" on {exp.dataset}"
    ours = (
        effect_sentence(
            change="With 16 layers (D) rather than 11 (A)",
            subject=subject,
            iv=iv_d,
            paper=paper_d,
            where="ImageNet",
            tail=tail,
        )
        + " "
        + effect_sentence(
            change="With 13 layers (B) rather than 11 (A)",
            subject=subject,
            iv=iv_b,
            paper=paper_b,
            where="ImageNet",
            tail=tail,
        )
        + f" Test top-1: A {mean_std([err_on_test(r) for r in a])}, "
        f"B {mean_std([err_on_test(r) for r in b])}, D {mean_std([err_on_test(r) for r in d])}."
    )
    plot = "curves.png"
    keys = error_panels(a[0])
    plot_curves(
        exp.folder / plot, labelled, keys, title=f"VGG A, B, D ({exp.dataset}, {seeds_text(len(exp.seeds))})"
    )
    return exp.result(
        ours,
        verdict,
        arm_rows(labelled),
        ran=(
            a[0],
            "the VGG configuration (A, B or D: 11, 13 or 16 weight layers)",
            f"paired seeds: {', '.join(map(str, exp.seeds))} (each arm)",
        ),
        protocol=PROTOCOL,
        departures=[
            *departures(exp, a[0]),
            "The configurations differ in shape, so their initial weights differ; the seeds pair the data "
            "order and augmentation only.",
        ],
        plots=[plot],
        notes=[
            f"The paper's effect sizes used by the verdict: A - D {100 * paper_d:.1f} points, A - B "
            f"{100 * paper_b:.1f} points of top-1 error (Table 3, single scale).",
            "The verdict is A vs D's; A vs B's is given in its reason.",
        ],
        runs=[*a, *b, *d],
        numbers={
            "test_top1_err": {arm.label: [err_on_test(r) for r in runs[arm.name]] for arm in arms},
            "a_minus_d": {"per_seed": gain_d, "mean": iv_d.mean, "ci95": [iv_d.low, iv_d.high]},
            "a_minus_b": {"per_seed": gain_b, "mean": iv_b.mean, "ci95": [iv_b.low, iv_b.high]},
            "paper_a_minus_d": paper_d,
            "paper_a_minus_b": paper_b,
        },
    )
