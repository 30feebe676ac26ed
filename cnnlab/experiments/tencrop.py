"""Claim `ten-crop`: averaging the softmax over ten patches beats the centre patch alone (section 4.1).

The paper's protocol: at test time, the softmax averaged over the four corner and the centre 224x224 patches
and their mirrors; every test number of the paper is measured so. It gives no number for the gain; the
verdict uses cuda-convnet2's published errors: top-1 42.5% one view -> 40.4% multiview, 2.1 points.

Both views test the same trained nets (the `standard` baseline), so the comparison is paired net by net.
"""

from __future__ import annotations

from cnnlab.experiments.ablation import BASELINE, standard_departures
from cnnlab.experiments.context import Experiment
from cnnlab.experiments.paper import CLAIMS
from cnnlab.experiments.results import ClaimResult, plot_points
from cnnlab.experiments.runner import evaluate_run
from cnnlab.experiments.sentences import difference, effect_sentence
from cnnlab.experiments.verdict import judge, mean_std, pct, t_interval

PROTOCOL = (
    "section 4.1: at test time the net averages its softmax over ten 224x224 patches (the four corners and "
    "the centre, and their reflections) of the 256x256 image. The paper gives no number for the gain."
)
# cuda-convnet2's published top-1 error, one view and multiview (paper.py's entry): the gain the verdict
# measures against.
_CITED = CLAIMS["ten-crop"].values
CONVNET2_TOP1 = (_CITED["cuda_convnet2_single_top1"], _CITED["cuda_convnet2_multi_top1"])


def run(exp: Experiment) -> ClaimResult:
    nets = exp.runner("standard").runs([BASELINE], exp.seeds)[BASELINE.name]
    done = [r for r in nets if not r.failed]
    views = {v: [evaluate_run(r, views=v) for r in done] for v in ("center", "tencrop")}
    err = {v: [float(e["top1_err"]) for e in res] for v, res in views.items()}
    err5 = {v: [float(e["top5_err"]) for e in res] for v, res in views.items()}
    gain = [c - t for c, t in zip(err["center"], err["tencrop"], strict=True)]
    gain5 = [c - t for c, t in zip(err5["center"], err5["tencrop"], strict=True)]
    iv, iv5 = t_interval(gain), t_interval(gain5)
    paper = CONVNET2_TOP1[0] - CONVNET2_TOP1[1]
    verdict = judge(
        iv,
        what="test top-1 error with the centre crop minus with ten crops (same nets)",
        paper=paper,
        dropped=len(nets) - len(done),
    )
    ours = effect_sentence(
        change="Tested on ten crops rather than the centre crop",
        subject=f"the same {exp.nets()}",
        iv=iv,
        paper=paper,
        where="cuda-convnet2 (ImageNet)",
        tail=f" on {exp.dataset}",
    ) + (
        f" Test top-1: centre {mean_std(err['center'])}, ten crops {mean_std(err['tencrop'])}; "
        f"top-5: {difference(iv5)}."
    )
    rows = [["views", "test top-1 error", "test top-5 error", "test top-1 per net"]]
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
        ylabel="test top-1 error",
        title="the same nets tested on one and ten views",
        xticks=[0, 1],
        xticklabels=["centre", "ten-crop"],
    )
    return exp.result(
        ours,
        verdict,
        rows,
        ran=(
            nets[0],
            "nothing: one set of nets, tested two ways",
            f"nets: seeds {', '.join(str(r.seed) for r in done)}; ten crops = four corners, centre, mirrors",
        ),
        protocol=PROTOCOL,
        departures=[
            *standard_departures(exp, nets[0])[:3],
            "The effect size the verdict compares with is cuda-convnet2's top-1 gain (42.5% -> 40.4%, "
            "2.1 points; its top-5 went 19.8% -> 18.2%), the paper giving none.",
        ],
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
            "top1_gain": {"mean": iv.mean, "ci95": [iv.low, iv.high], "nets": iv.n},
            "paper_top1_gain": paper,
        },
    )
