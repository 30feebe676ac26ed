"""Claim `lrn`: local response normalisation lowers the error (section 3.3)."""

from __future__ import annotations

from cnnlab.experiments.ablation import ablation
from cnnlab.experiments.context import Experiment
from cnnlab.experiments.results import ClaimResult
from cnnlab.experiments.runner import Arm


def run(exp: Experiment) -> ClaimResult:
    return ablation(
        exp,
        on_label="LRN on",
        off=Arm("lrn-off", "LRN off", {"lrn": False}),
        varied="the LRN layers after the first two convolutions (k=2, n=5, alpha=1e-4, beta=0.75)",
        notes=[
            "The paper's ImageNet numbers come from 90 epochs on 1.2 million images; the CIFAR-10 one "
            "(13% -> 11%) from a four-layer net trained to convergence. A budget of a few epochs measures "
            "whether LRN helps early in training, which is not the same question.",
        ],
    )
