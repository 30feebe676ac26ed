"""What the VGG and GoogLeNet claims that train share: their nets, their arms and their departures.

They train the `successor` setting (budget.py: the standard setting's data, sizes and augmentation) on
the small-image nets (`vgg_small`, `googlenet_small`, docs/models.md). Configuration A's arm is one arm
shared by vgg-depth and vgg-lrn (the same name and settings give the same run folder), so `all-vgg`
trains it once.
"""

from __future__ import annotations

from cnnlab.experiments.context import Experiment, data_departure, one_cycle_words, run_length
from cnnlab.experiments.runner import Arm, Run

SETTING = "successor"
VGG_MODEL = "vgg_small"
GOOGLENET_MODEL = "googlenet_small"


def vgg_arm(config: str, *, lrn: bool = False) -> Arm:
    """Configuration `config` of `vgg_small` (with A-LRN's LRN after conv1_1 when `lrn`)."""
    name = f"vgg-{config.lower()}" + ("-lrn" if lrn else "")
    label = f"VGG {config}" + ("-LRN" if lrn else "")
    settings = {"model_opt": [f"config={config}"], **({"lrn": True} if lrn else {})}
    return Arm(name, label, settings)


def departures(exp: Experiment, run: Run) -> list[str]:
    """How the `successor` setting departs from VGG's and GoogLeNet's ImageNet training."""
    c = run.config
    return [
        data_departure(exp, run),
        f"Model: {c.model}, the paper's layer pattern for small images at a quarter of its widths "
        "(docs/models.md), not the 224 px net.",
        f"{run_length(run)} with the AlexNet paper's "
        "SGD recipe"
        + (f" and {one_cycle_words(c)}" if c.schedule == "onecycle" else "")
        + ", instead of the papers' 74 (VGG) or ~250 (GoogLeNet, asynchronous SGD) epochs"
        + (
            ": the table of plateau checks says whether each arm was trained."
            if exp.budget.trained
            else ": the nets are far from trained, so the verdict is about early training, not trained nets."
        ),
        "Kaiming initialisation for every net (VGG trained its deeper nets from A's weights at first); "
        "per-channel normalisation; random crops from slightly enlarged images, no scale jittering.",
        "Centre-crop test errors (the papers report single-scale or multi-crop ones); the last epoch, no "
        "model selection.",
    ]
