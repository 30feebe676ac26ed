"""The successors' claims that need no training: counted exactly on the nets cnnlab builds.

Each function traces the nets on the meta device (shapes only: no memory, no arithmetic, well under a
second each) through `summary.layer_table`, whose rows carry every layer's parameters, multiply-adds and
receptive field, and returns a `Computed`: the paper's number, ours, a table and a verdict. The verdicts
are not intervals (nothing here varies with a seed) but comparisons of exact counts with the paper's
figure:

- **holds**: ours, rounded as the paper rounds its figure, is the paper's figure;
- **holds roughly**: within 10% of it;
- **does not hold as stated**: further off (the report says by how much, and what the paper may have
  counted instead).

Multiply-adds are the conv and fully connected layers' (the unit both papers count in), per image, at
224 px (227 for AlexNet); parameters are those inference uses (GoogLeNet without its auxiliary heads,
which section 5 discards at inference). AlexNet is the paper's two-tower net (`alexnet_grouped`,
60,965,224 parameters), the "60 million" both successor papers compare with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab import models
from cnnlab.checkpoint import write_text
from cnnlab.compare import saved_bytes
from cnnlab.errors import CnnlabError
from cnnlab.experiments.paper import CLAIMS, PAPERS
from cnnlab.models.googlenet import MODULES
from cnnlab.summary import LayerRow, fmt_bytes, fmt_count, layer_table, totals
from cnnlab.texttable import render

HOLDS = "holds"
ROUGHLY = "holds roughly"
DIFFERS = "does not hold as stated"
TOLERANCE = 0.10  # "holds roughly": within 10% of the paper's figure

ALEXNET = ("alexnet_grouped", 227)  # the paper's net, two towers: 60,965,224 parameters


@dataclass
class Computed:
    claim: str
    ours: str  # our numbers in one line
    verdict: str  # HOLDS, ROUGHLY or DIFFERS
    reason: str
    tables: list[tuple[str, list[list[str]]]]  # (title, rows with the header first)
    numbers: dict[str, Any] = field(default_factory=dict)  # result.json
    notes: list[str] = field(default_factory=list)


def compare_figure(ours: float, paper: float, digits: int) -> str:
    """HOLDS when `ours` rounded to `digits` decimals is `paper`, ROUGHLY within TOLERANCE, else DIFFERS."""
    if round(ours, digits) == round(paper, digits):
        return HOLDS
    return ROUGHLY if abs(ours - paper) <= TOLERANCE * abs(paper) else DIFFERS


def worst(verdicts: list[str]) -> str:
    """A claim of several figures holds only as well as its weakest."""
    return max(verdicts, key=(HOLDS, ROUGHLY, DIFFERS).index)


def _meta(name: str, **switches: Any) -> torch.nn.Module:
    """Model `name` on the meta device; no init scheme runs (shapes only, and Kaiming's on meta costs
    seconds on its first call)."""
    with torch.device("meta"):
        return models.create(name, 1000, 3, init="default", **switches)


def _rows(name: str, side: int, **switches: Any) -> list[LayerRow]:
    return layer_table(_meta(name, **switches), (3, side, side))


def _saved(name: str, side: int) -> int:
    """Bytes a training step keeps for the backward pass, per image (compare's 'saved for bwd' at B=1)."""
    return saved_bytes(_meta(name), (3, side, side), 1)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# -- VGG section 2.3 ---------------------------------------------------------------------------------------


def vgg_small_filters() -> Computed:
    """Each VGG-16 stage's stack of 3x3 convs: its receptive field on the stage's input map (read from the
    layer table), its weights, and those of the one large conv that would see as far."""
    paper = CLAIMS["vgg-small-filters"].values
    rows = _rows("vgg16", 224)
    table = [["stage", "3x3 convs", "channels", "stack sees", "in image px", "stack weights",
              "one conv of that size", "stack / one", "ReLUs"]]  # fmt: skip
    stages: list[dict[str, Any]] = []
    convs: list[LayerRow] = []
    field_in, jump_in = (1, 1), (1, 1)  # what the stage's input sees: the image, then each pool's output
    for r in rows:
        if r.type == "Conv2d":
            convs.append(r)
        elif r.type == "MaxPool2d" and convs:
            last = convs[-1]
            assert last.field is not None and r.field is not None and r.jump is not None
            n, width = len(convs), last.output_shape[0]
            weights = [c.params - c.output_shape[0] for c in convs]  # biases left out, as the paper does
            cin = weights[0] // (9 * width)
            sees = (last.field[0] - field_in[0]) // jump_in[0] + 1  # in pixels of the stage's input map
            big = sees * sees * cin * width
            stages.append({"stage": len(stages) + 1, "convs": n, "in": cin, "width": width, "sees": sees,
                           "field": last.field[0], "weights": sum(weights), "one_conv": big})  # fmt: skip
            table.append([
                f"conv{len(stages)}", str(n), f"{cin}->{width}", f"{sees}x{sees}", str(last.field[0]),
                f"{sum(weights):,}", f"{big:,} ({sees}x{sees})", f"{sum(weights) / big:.2f}x", f"{n} vs 1",
            ])  # fmt: skip
            field_in, jump_in, convs = r.field, r.jump, []
    # The paper's arithmetic, C channels in and out: n layers of 9C^2 against one (2n+1)^2 C^2.
    formula = [["3x3 layers", "sees", "weights", "one conv", "fewer", "the paper"]]
    verdicts = []
    for n, key in ((2, "fewer_2"), (3, "fewer_3")):
        side = 2 * n + 1
        fewer = 1 - 9 * n / side**2
        verdicts.append(compare_figure(fewer, paper[key], 2))
        formula.append([str(n), f"{side}x{side}", f"{9 * n}C^2", f"{side**2}C^2", _pct(fewer),
                        _pct(paper[key])])  # fmt: skip
    more = 49 / 27 - 1
    verdicts.append(compare_figure(more, paper["more_7x7"], 2))
    seen_ok = all(s["sees"] == 2 * s["convs"] + 1 for s in stages)
    verdict = worst(verdicts) if seen_ok else DIFFERS
    five = [s for s in stages if s["convs"] == 3 and s["in"] == s["width"]]
    ours = (
        "two 3x3 layers see 5x5 and three see 7x7 in every VGG-16 stage (read from the layer table); "
        f"18C^2 vs 25C^2 is {_pct(1 - 18 / 25)} fewer, 27C^2 vs 49C^2 {_pct(1 - 27 / 49)} fewer (one 7x7 "
        f"has {_pct(more)} more); conv5's stack: {five[-1]['weights']:,} weights vs {five[-1]['one_conv']:,}"
    )
    return Computed(
        "vgg-small-filters",
        ours,
        verdict,
        f"the receptive fields are {'as stated' if seen_ok else 'not as stated'} in all {len(stages)} "
        "stages, and the weight savings round to the paper's 28%, 45% and 81% more",
        [
            ("VGG-16's stages at 224 px (weights without biases)", table),
            ("The paper's arithmetic, C channels in and out", formula),
        ],
        {"stages": stages, "fewer_2": 1 - 18 / 25, "fewer_3": 1 - 27 / 49, "more_7x7": more},
        notes=[
            "'stack sees': the stack's receptive field on the map the stage reads, from the layer table's "
            "fields (last conv's field minus the stage input's, over the input's jump, plus 1).",
            "The paper's arithmetic assumes C channels in and out, which in VGG-16 holds for conv5's stack "
            "only (0.55x: 45% fewer). Where a stage widens, its first 3x3 layer reads the narrower input, "
            "and the one large conv would too: conv1's stack reads 3 channels and writes 64 twice, so it "
            "has 8x the weights of one 5x5 conv from 3 to 64 channels; conv3 and conv4 save 8%.",
        ],
    )


# -- VGG-16 against AlexNet --------------------------------------------------------------------------------


def vgg_cost() -> Computed:
    paper = CLAIMS["vgg-cost"].values
    alex, vgg = totals(_rows(*ALEXNET)), totals(_rows("vgg16", 224))
    alex_mem, vgg_mem = _saved(*ALEXNET), _saved("vgg16", 224)
    table = [
        ["", f"AlexNet ({ALEXNET[0]}, {ALEXNET[1]} px)", "VGG-16 (224 px)", "VGG-16 / AlexNet"],
        ["parameters", f"{alex.params:,}", f"{vgg.params:,}", f"{vgg.params / alex.params:.2f}x"],
        ["multiply-adds per image", fmt_count(alex.macs), fmt_count(vgg.macs),
         f"{vgg.macs / alex.macs:.1f}x"],
        ["training activation memory per image", fmt_bytes(alex_mem), fmt_bytes(vgg_mem),
         f"{vgg_mem / alex_mem:.2f}x"],
        ["activation memory, eval forward per image", fmt_bytes(alex.activation_bytes),
         fmt_bytes(vgg.activation_bytes), f"{vgg.activation_bytes / alex.activation_bytes:.2f}x"],
    ]  # fmt: skip
    figures = [
        ("VGG-16 parameters (Table 2)", vgg.params / 1e6, paper["vgg16_params"] / 1e6, 0),
        ("AlexNet parameters (its abstract)", alex.params / 1e6, paper["alexnet_params"] / 1e6, -1),
        ("VGG-16 multiply-adds (commonly quoted)", vgg.macs / 1e9, paper["vgg16_macs"] / 1e9, 1),
    ]
    checks = [["figure", "the paper", "ours", "verdict"]]
    verdicts = []
    for what, ours_v, paper_v, digits in figures:
        v = compare_figure(ours_v, paper_v, digits)
        verdicts.append(v)
        unit = "G" if "multiply" in what else "M"
        checks.append([what, f"{paper_v:g}{unit}", f"{ours_v:.2f}{unit}", v])
    more = vgg.params > alex.params and vgg.macs > alex.macs and vgg_mem > alex_mem
    ours = (
        f"VGG-16 has {vgg.params / alex.params:.2f}x AlexNet's parameters, {vgg.macs / alex.macs:.1f}x its "
        f"multiply-adds ({fmt_count(vgg.macs)} vs {fmt_count(alex.macs)}) and keeps "
        f"{vgg_mem / alex_mem:.2f}x its activation memory for a training step ({fmt_bytes(vgg_mem)} vs "
        f"{fmt_bytes(alex_mem)} per image)"
    )
    return Computed(
        "vgg-cost",
        ours,
        worst(verdicts) if more else DIFFERS,
        "VGG-16 costs more than AlexNet on all three counts; "
        + "; ".join(f"{row[0]}: {row[3]}" for row in checks[1:]),
        [("Cost per image, counted on the meta device", table), ("The papers' figures", checks)],
        {
            "alexnet": {"params": alex.params, "macs": alex.macs, "train_activation_bytes": alex_mem},
            "vgg16": {"params": vgg.params, "macs": vgg.macs, "train_activation_bytes": vgg_mem},
        },
        notes=[
            "Training activation memory: what autograd keeps for the backward pass in one training-mode "
            "forward (the input, the outputs the backward needs, dropout masks, pool indices), weights "
            "excluded: `cnnlab compare`'s 'saved for bwd' at batch 1.",
            "Speed is not counted here: `cnnlab compare alexnet_grouped vgg16` measures it on this machine.",
            "The one-tower `alexnet` (every conv reading all maps) has 62,378,344 parameters and 1.14G "
            "multiply-adds; the two towers halve conv2, conv4 and conv5.",
        ],
    )


# -- GoogLeNet ---------------------------------------------------------------------------------------------


def googlenet_cost() -> Computed:
    paper = CLAIMS["googlenet-cost"].values
    alex = totals(_rows(*ALEXNET))
    net = totals(_rows("googlenet", 224, aux_logits=False))
    full = totals(_rows("googlenet", 224))  # the auxiliary heads are counted, not run, in eval mode
    fewer = alex.params / net.params
    v_params = compare_figure(fewer, paper["fewer_than_alexnet"], 0)
    v_macs = compare_figure(net.macs / 1e9, paper["macs"] / 1e9, 1)
    table = [
        ["", "the paper", "ours, without the aux heads", "ours, with them"],
        ["parameters", "", f"{net.params:,}", f"{full.params:,}"],
        ["AlexNet / GoogLeNet parameters", f"{paper['fewer_than_alexnet']:g}x", f"{fewer:.2f}x",
         f"{alex.params / full.params:.2f}x"],
        ["multiply-adds at inference", f"{paper['macs'] / 1e9:g}G", fmt_count(net.macs), "(same: not run)"],
    ]  # fmt: skip
    ours = (
        f"{net.params:,} parameters without the auxiliary heads: {fewer:.1f}x fewer than AlexNet's "
        f"{alex.params:,}, not 12x; {fmt_count(net.macs)} multiply-adds at 224 px"
    )
    return Computed(
        "googlenet-cost",
        ours,
        worst([v_params, v_macs]),
        f"12x fewer parameters: {v_params} ({fewer:.2f}x); 1.5 billion multiply-adds: {v_macs} "
        f"({net.macs / 1e9:.2f} billion)",
        [("GoogLeNet (the paper's net, 5x5 branches) against AlexNet (two towers)", table)],
        {
            "params": net.params,
            "params_with_aux": full.params,
            "alexnet_params": alex.params,
            "fewer_than_alexnet": fewer,
            "macs": net.macs,
        },
        notes=[
            "12x would need about 5.1 million parameters; the authors' later paper (Szegedy et al. 2016, "
            "Rethinking the Inception Architecture, section 1) also says GoogLeNet 'employed only 5 "
            "million parameters'. Our count is the paper's Table 1 built layer by layer, with biases and "
            "the 1,025,000 of the last fc layer; the text's 12x does not follow from it.",
            "The multiply-adds count the conv and fc layers (a pool or LRN has no multiply-adds).",
            "Counted as cnnlab's googlenet builds it today; its forward applies the final average pool "
            "twice (issue 25), which adds no multiply-adds and no parameters.",
        ],
    )


def googlenet_reductions() -> Computed:
    """Every Inception block with its 1x1 reductions and without them (3x3 and 5x5 reading the block's
    input directly, the pool projection kept so the block's output is unchanged)."""
    rows = _rows("googlenet", 224, aux_logits=False)
    by_name = {r.name: r for r in rows}
    table = [
        ["block", "input", "params with", "params without", "multiply-adds with", "without", "without / with"]
    ]
    blocks: dict[str, dict[str, int]] = {}
    for key in MODULES:
        b = f"inception{key}"
        inside = [r for r in rows if r.name.startswith(b + ".")]
        params, macs = sum(r.params for r in inside), sum(r.macs for r in inside)
        one = by_name[f"{b}.branch1.conv"]
        hw = one.output_shape[1] * one.output_shape[2]
        cin = (one.params - one.output_shape[0]) // one.output_shape[0]
        p_without, m_without = params, macs
        for branch in ("branch2", "branch3"):
            reduce, conv = by_name[f"{b}.{branch}.0.conv"], by_name[f"{b}.{branch}.1.conv"]
            cout = conv.output_shape[0]
            k2 = (conv.params - cout) // (cout * reduce.output_shape[0])  # kernel area of the 3x3 / 5x5
            p_without += cin * cout * k2 + cout - reduce.params - conv.params
            m_without += cin * cout * k2 * hw - reduce.macs - conv.macs
        blocks[key] = {"params": params, "params_without": p_without, "macs": macs, "macs_without": m_without}
        table.append([
            b, f"{cin}x{one.output_shape[1]}x{one.output_shape[2]}", f"{params:,}", f"{p_without:,}",
            fmt_count(macs), fmt_count(m_without), f"{m_without / macs:.2f}x",
        ])  # fmt: skip
    tp, tpw = sum(v["params"] for v in blocks.values()), sum(v["params_without"] for v in blocks.values())
    tm, tmw = sum(v["macs"] for v in blocks.values()), sum(v["macs_without"] for v in blocks.values())
    net = totals(rows)
    table.append(["all nine", "", f"{tp:,}", f"{tpw:,}", fmt_count(tm), fmt_count(tmw), f"{tmw / tm:.2f}x"])
    whole_without = net.macs - tm + tmw
    ours = (
        f"without the reductions the nine Inception blocks would need {tmw / tm:.2f}x the multiply-adds "
        f"({fmt_count(tmw)} vs {fmt_count(tm)}) and {tpw / tp:.2f}x the parameters; the whole net "
        f"{fmt_count(whole_without)} instead of {fmt_count(net.macs)} multiply-adds"
    )
    saved_everywhere = all(v["macs_without"] > v["macs"] for v in blocks.values())
    return Computed(
        "googlenet-reductions",
        ours,
        HOLDS if saved_everywhere else DIFFERS,
        "every block costs more without its reductions"
        if saved_everywhere
        else "some block costs less without its reductions",
        [("Inception blocks at 224 px, with and without the 1x1 reductions", table)],
        {"blocks": blocks, "net_macs": net.macs, "net_macs_without": whole_without},
        notes=[
            "Without: the 3x3 and 5x5 convolutions read the block's input directly, with the widths of "
            "Table 1; the pool projection is kept, so every block's output and the rest of the net are "
            "unchanged. Figure 2a's naive module also drops that projection, which would widen every "
            "block's output and cost more still.",
        ],
    )


COMPUTED: dict[str, Callable[[], Computed]] = {
    "vgg-small-filters": vgg_small_filters,
    "vgg-cost": vgg_cost,
    "googlenet-cost": googlenet_cost,
    "googlenet-reductions": googlenet_reductions,
}


# -- output ------------------------------------------------------------------------------------------------


def text(c: Computed) -> str:
    """What `cnnlab reproduce CLAIM` prints for a computed claim."""
    p = CLAIMS[c.claim]
    lines = [
        f"== {c.claim}: {p.title} ({PAPERS[p.paper]}, {p.section}; computed exactly, no training)",
        f"paper: {p.number}",
        f"ours: {c.ours}",
        "",
    ]
    for title, rows in c.tables:
        lines += [f"{title}:", render(rows[0], rows[1:], right=set(range(1, len(rows[0])))), ""]
    lines += [f"{c.claim}: {c.verdict}. {c.reason[0].upper()}{c.reason[1:]}."]
    lines += [f"- {n}" for n in c.notes]
    return "\n".join(lines)


def markdown(c: Computed) -> str:
    p = CLAIMS[c.claim]
    lines = [
        f"# {p.title}",
        "",
        f"`cnnlab reproduce {c.claim}` (computed exactly on the nets cnnlab builds; no training)",
        "",
        "## What the paper says",
        "",
        f"{p.says} ({PAPERS[p.paper]}, {p.section})",
        "",
        f"**Paper's number:** {p.number}",
        "",
        f"**Ours:** {c.ours}",
        "",
    ]
    for title, rows in c.tables:
        lines += [f"{title}:", "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]] + [""]
    lines += [f"## Verdict: {c.verdict}", "", c.reason[0].upper() + c.reason[1:] + ".", ""]
    lines += ["## Notes", "", *(f"- {n}" for n in c.notes), ""] if c.notes else []
    return "\n".join(lines)


def run(claim: str, out: Path | None = None, log: Callable[[str], None] = print) -> Computed:
    """Compute `claim`, print it; with `out`, also write OUT/report.md and OUT/result.json."""
    c = COMPUTED[claim]()
    log(text(c))
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CnnlabError(f"cannot create {out} ({exc.strerror}); choose another --out") from exc
        write_text(out / "report.md", markdown(c))
        doc = {"claim": claim, "paper": CLAIMS[claim].number, "ours": c.ours, "verdict": c.verdict,
               "reason": c.reason, "numbers": c.numbers}  # fmt: skip
        write_text(out / "result.json", json.dumps(doc, indent=2, default=_plain) + "\n")
        log(f"report: {out / 'report.md'}")
    return c


def index_row(c: Computed, report: Path, root: Path) -> list[str]:
    """A row of index.md's table of computed claims: linked claim, the paper's figure, ours, verdict."""
    link = f"[{c.claim}]({report.relative_to(root).as_posix()})"
    return [link, CLAIMS[c.claim].number, c.ours, f"**{c.verdict}**"]


def _plain(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)
