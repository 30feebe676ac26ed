"""`cnnlab mistakes`: the images the net gets wrong most confidently, with what it said and what was true.

The data set is evaluated exactly as `cnnlab eval` does (the checkpoint's preprocessing, the chosen test
views averaged); among the wrong top-1 predictions, the ones with the highest predicted probability come
first. Each cell shows the image as the net saw it (centre view), the predicted class and its
probability, and the true class and the probability the net gave it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab import data, evaluate
from cnnlab.errors import CnnlabError
from cnnlab.pictures import common
from cnnlab.pictures.paper import raw_image


@dataclass(frozen=True)
class Mistake:
    index: int  # into the evaluated data set
    true: int
    predicted: int
    p_predicted: float
    p_true: float


def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, count: int) -> list[Mistake]:
    """The `count` wrong top-1 predictions with the highest predicted probability, most confident first."""
    conf, pred = probs.max(dim=1)
    wrong = (pred != labels).nonzero()[:, 0]
    order = wrong[conf[wrong].argsort(descending=True, stable=True)][:count]
    return [
        Mistake(int(i), int(labels[i]), int(pred[i]), float(conf[i]), float(probs[i, labels[i]]))
        for i in order
    ]


def evaluate_on(
    subject: common.Subject, ds: Any, views: str = "center", batch_size: int = 256
) -> dict[str, Any]:
    """`evaluate.evaluate` of the subject's net on `ds` with its own preprocessing (probabilities kept)."""
    if list(ds.classes) != subject.classes:
        raise CnnlabError(
            f"data set {ds.name!r} has classes {ds.classes[:4]}..., the checkpoint {subject.classes[:4]}...; "
            "use the data set it was trained on"
        )
    loader = data.BatchLoader(ds, batch_size, train=False, aug=subject.aug, stats=subject.stats, seed=0,
                              device=subject.device, views=views)  # fmt: skip
    return evaluate.evaluate(subject.model, loader, subject.device, amp=subject.amp)


def figure(pictures: Any, found: Sequence[Mistake], classes: Sequence[str], title: str, cols: int = 8) -> Any:
    plt = common.pyplot()
    cols = max(1, min(cols, len(found)))
    rows = max(1, math.ceil(len(found) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.75 * cols, 2.15 * rows + 0.5), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax in axes.flat:
        ax.set_axis_off()
    for k, (m, picture) in enumerate(zip(found, pictures, strict=True)):
        ax = axes[k // cols, k % cols]
        common.show_image(ax, picture)
        ax.set_axis_on()
        ax.set_title(
            f"said {classes[m.predicted]} {common.percent(m.p_predicted)}\n"
            f"true {classes[m.true]} {common.percent(m.p_true)}",
            fontsize=8,
        )
        ax.set_xlabel(f"#{m.index}", fontsize=7)
    if not found:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center", transform=axes[0, 0].transAxes)
    fig.suptitle(title, fontsize=11)
    return fig


def mistakes_figure(
    subject: common.Subject, ds: Any, result: dict[str, Any], count: int, where: str
) -> tuple[Any, list[Mistake]]:
    """The grid for an evaluation `result` (with probabilities) of `ds`."""
    found = confident_mistakes(result["probs"], result["labels"], count)
    pictures: Any = []
    if found:
        side = subject.base_side()
        raw = torch.stack([raw_image(ds, m.index, side) for m in found])
        pictures = subject.from_uint8(raw)[1]
    wrong = int((result["probs"].argmax(1) != result["labels"]).sum())
    title = (
        f"{subject.name} on {where}: the {len(found)} most confident of {wrong} wrong predictions "
        f"({len(result['labels'])} images)"
    )
    return figure(pictures, found, subject.classes, title), found
