"""Claim `ten-crop`: averaging the softmax over ten patches beats the centre patch alone (section 4.1).

Both views test the same trained nets (the `standard` baseline), so the comparison is paired: the
spread that matters is that of the per-net differences, not how much the nets differ among themselves.
"""

from __future__ import annotations

from cnnlab.experiments.ablation import BASELINE
from cnnlab.experiments.context import Experiment, describe
from cnnlab.experiments.results import ClaimResult, plot_points
from cnnlab.experiments.runner import evaluate_run
from cnnlab.experiments.verdict import compare, mean, mean_std, pct


def run(exp: Experiment) -> ClaimResult:
    nets = exp.runner("standard").runs([BASELINE], exp.seeds)[BASELINE.name]
    done = [r for r in nets if not r.failed]
    views = {v: [evaluate_run(r, views=v) for r in done] for v in ("center", "tencrop")}
    err = {v: [float(e["top1_err"]) for e in res] for v, res in views.items()}
    err5 = {v: [float(e["top5_err"]) for e in res] for v, res in views.items()}
    verdict = compare(
        err["tencrop"],
        err["center"],
        what="validation top-1 error",
        claimed_label="ten-crop",
        other_label="the centre crop",
        paired=True,
    )
    diff = mean(err["tencrop"]) - mean(err["center"])
    ours = (
        f"ten-crop {mean_std(err['tencrop'])} vs centre {mean_std(err['center'])} val top-1 "
        f"({100 * diff:+.2f} points, same nets)"
    )
    rows = [["views", "val top-1 error", "val top-5 error", "val top-1 per net"]]
    for v, label in (("center", "centre crop"), ("tencrop", "ten crops (softmax averaged)")):
        rows.append([label, mean_std(err[v]), mean_std(err5[v]), ", ".join(pct(e) for e in err[v])])
    plot = "views.png"
    plot_points(
        exp.folder / plot,
        {
            f"seed {r.seed}": ([0, 1], [c, t])
            for r, c, t in zip(done, err["center"], err["tencrop"], strict=True)
        },
        xlabel="test views",
        ylabel="validation top-1 error",
        title="the same nets tested on one and ten views",
        xticks=[0, 1],
        xticklabels=["centre", "ten-crop"],
    )
    return ClaimResult(
        exp.claim,
        ours,
        verdict,
        describe(
            nets[0],
            "nothing: one set of nets, tested two ways",
            f"nets: seeds {', '.join(str(r.seed) for r in done)}; ten crops = four corners, centre, mirrors",
        ),
        rows,
        plots=[plot],
        notes=[
            "The crops come from the images resized by the paper's 256/224 ratio, as in training, so "
            "the corner patches see parts of the image the centre patch misses.",
        ],
        runs=nets,
        numbers={
            "center_top1": err["center"],
            "tencrop_top1": err["tencrop"],
            "center_top5": err5["center"],
            "tencrop_top5": err5["tencrop"],
        },
    )
