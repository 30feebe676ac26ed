"""Claim `vgg-lrn`: LRN does not improve VGG's configuration A (Simonyan & Zisserman, section 4.1).

The paper's protocol (Table 3): configuration A with and without local response normalisation after its
first layer (AlexNet's constants), single-scale top-1 error 29.7% with it, 29.6% without: "LRN does not
improve the performance of model A". A claim of *no* effect: the effect per seed is the test top-1 error
with LRN minus without (positive: LRN hurts), and the rule is an equivalence test (`verdict.judge_no_effect`):
reproduced when the whole interval lies within 0.9 points of zero (the smallest difference Table 3 reports
as real, A -> B), contradicted when it excludes zero.
"""

from __future__ import annotations

from cnnlab.experiments.ablation import ablation
from cnnlab.experiments.context import Experiment
from cnnlab.experiments.paper import CLAIMS
from cnnlab.experiments.results import ClaimResult
from cnnlab.experiments.successors import SETTING, departures, vgg_arm
from cnnlab.experiments.verdict import judge_no_effect

MODEL = "vgg_small"
PROTOCOL = (
    "section 4.1, Table 3: configuration A trained with and without LRN after its first layer; top-1 / "
    'top-5 error 29.6/10.4 without, 29.7/10.5 with: "LRN does not improve the performance of model A".'
)


def run(exp: Experiment) -> ClaimResult:
    v = CLAIMS[exp.claim].values
    margin = CLAIMS["vgg-depth"].values["A"] - CLAIMS["vgg-depth"].values["B"]  # 0.9 points
    # `ablation` calls its first arm the paper's choice: here that is A without LRN (the paper keeps no LRN).
    return ablation(
        exp,
        on_label="VGG A",
        on=vgg_arm("A"),
        off=vgg_arm("A", lrn=True),
        varied="LRN after conv1_1 (A-LRN: n=5, alpha=1e-4, beta=0.75, k=2)",
        protocol=PROTOCOL,
        paper_effect=v["A_LRN"] - v["A"],
        paper_source="Table 3: A 29.6% vs A-LRN 29.7%",
        setting=SETTING,
        change="Without LRN (configuration A rather than A-LRN)",
        base_departures=departures,
        rule=lambda iv, what: judge_no_effect(iv, what=what, margin=margin),
        notes=[
            f"A claim of no effect: reproduced when the interval lies within {100 * margin:.1f} points of "
            "zero (Table 3's smallest real difference, A -> B), contradicted when it excludes zero.",
            "LRN has no parameters, so both arms start from the same weights on each seed.",
        ],
    )
