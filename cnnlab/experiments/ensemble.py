"""Claim `ensemble`: averaging the softmax of several nets lowers the error (section 6, Table 2).

The paper's protocol: CNNs trained alike (differing in initialisation and data order), their predictions
averaged; ILSVRC-2012 validation error 1 net 40.7%/18.2% top-1/top-5, 5 nets 38.1%/16.4%. The nets here are
the `standard` baseline on different seeds. The effect is the mean single net's test top-1 error minus the
error of the ensemble of all the nets; its interval is a bootstrap over the nets (resampled with
replacement, every statistic recomputed), since the gain is not a difference per seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import torch

from cnnlab.evaluate import metrics_from_probs
from cnnlab.experiments.ablation import BASELINE, standard_departures
from cnnlab.experiments.context import Experiment
from cnnlab.experiments.paper import CLAIMS
from cnnlab.experiments.results import ClaimResult, plot_points
from cnnlab.experiments.runner import evaluate_run
from cnnlab.experiments.sentences import effect_sentence
from cnnlab.experiments.verdict import bootstrap, judge, mean_std, pct

MAX_SUBSETS = 35
PROTOCOL = (
    "section 6, Table 2: the predictions of several CNNs, trained alike but from different initialisations, "
    "averaged; ILSVRC-2012 validation top-1 (top-5) error 40.7% (18.2%) for one net, 38.1% (16.4%) for five."
)


def sizes(n: int) -> list[int]:
    """The paper's ensemble sizes (1, 5, 7) and 3, up to n nets, and n itself."""
    return sorted({k for k in (1, 3, 5, 7) if k <= n} | {n})


def subsets(n: int, k: int) -> list[tuple[int, ...]]:
    combos = list(itertools.combinations(range(n), k))
    if len(combos) > MAX_SUBSETS:
        combos = sorted(random.Random(k).sample(combos, MAX_SUBSETS))
    return combos


def top1(probs: torch.Tensor, labels: torch.Tensor, members: Sequence[int]) -> float:
    """Top-1 error of the softmax average of `members` (indices into probs [nets, images, classes])."""
    avg = probs[list(members)].mean(0)
    return float((avg.argmax(1) != labels).double().mean())


def run(exp: Experiment) -> ClaimResult:
    n = max(exp.budget.ensemble_nets, len(exp.seeds))
    first = exp.seeds[0]  # the paired seeds first (their baselines are shared), then more from there
    nets = exp.runner("standard").runs([BASELINE], list(range(first, first + n)))[BASELINE.name]
    done = [r for r in nets if not r.failed]
    singles = [evaluate_run(r) for r in done]
    probs = torch.stack([s["probs"].double() for s in singles])
    labels = singles[0]["labels"]
    by_size: dict[int, list[tuple[float, float]]] = {}
    for k in sizes(len(done)):
        by_size[k] = []
        for subset in subsets(len(done), k):
            m = metrics_from_probs(probs[list(subset)].mean(0), labels)
            by_size[k].append((float(m["top1_err"]), float(m["top5_err"])))
    err1 = {k: [e[0] for e in v] for k, v in by_size.items()}
    err5 = {k: [e[1] for e in v] for k, v in by_size.items()}
    largest = max(by_size)

    alone = [top1(probs, labels, [i]) for i in range(len(done))]

    def gain(members: Sequence[int]) -> float:
        return sum(alone[i] for i in members) / len(members) - top1(probs, labels, members)

    iv = bootstrap(len(done), gain)
    v = CLAIMS[exp.claim].values
    paper = v["top1_1"] - v["top1_5"]
    verdict = judge(
        iv,
        what=f"test top-1 error of a single net (mean) minus the {largest}-net ensemble's",
        paper=paper,
        dropped=len(nets) - len(done),
    )
    ours = effect_sentence(
        change=f"Averaging the softmax of {largest} {exp.nets()}",
        subject="the ensemble",
        verb="makes",
        iv=iv,
        paper=paper,
        where="ImageNet (1 -> 5 nets)",
        tail=f" than one net on {exp.dataset}",
    ) + (
        " Bootstrap interval over nets. Test top-1: "
        + ", ".join(f"{k} net{'s' if k > 1 else ''} {mean_std(err1[k])}" for k in sorted(err1))
        + "."
    )
    rows = [
        ["nets", "test top-1 error", "test top-5 error", "subsets scored", "paper top-1 / top-5 (ImageNet)"]
    ]
    for k in sorted(by_size):
        ref = f"{pct(v[f'top1_{k}'])} / {pct(v[f'top5_{k}'])}" if f"top5_{k}" in v else ""
        rows.append([str(k), mean_std(err1[k]), mean_std(err5[k]), str(len(by_size[k])), ref])
    plot = "ensemble.png"
    xs = [k for k in sorted(err1) for _ in err1[k]]
    plot_points(
        exp.folder / plot,
        {"top-1": (xs, [e for k in sorted(err1) for e in err1[k]])},
        xlabel="nets averaged",
        ylabel="test error",
        title=f"softmax-averaged ensembles ({exp.dataset})",
        xticks=sorted(err1),
    )
    return exp.result(
        ours,
        verdict,
        rows,
        ran=(
            nets[0],
            "the seed (initial weights, data order, augmentation)",
            f"{len(done)} nets (seeds {first}-{first + n - 1}); ensembles average the nets' softmax on the "
            "centre crop",
        ),
        protocol=PROTOCOL,
        departures=[
            *standard_departures(exp, nets[0])[:3],
            f"The verdict compares the gain from 1 to {largest} nets with the paper's from 1 to 5 "
            f"({100 * paper:.1f} points of top-1); the paper's 7-net figure includes two nets pre-trained on "
            "another data set, which we do not reproduce.",
            "Top-1, not top-5: with 10 classes top-5 error is near zero.",
        ],
        plots=[plot],
        notes=[
            "The spread of a size in the table is over the subsets of nets scored, which share nets: a "
            "guide, not an independent sample. The interval of the gain resamples the nets themselves.",
        ],
        runs=nets,
        numbers={
            "top1": {str(k): e for k, e in err1.items()},
            "top5": {str(k): e for k, e in err5.items()},
            "top1_gain": {"mean": iv.mean, "ci95": [iv.low, iv.high], "nets": iv.n, "method": "bootstrap"},
            "paper_top1_gain": paper,
        },
    )
