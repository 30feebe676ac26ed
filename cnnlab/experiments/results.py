"""What a claim hands back (`ClaimResult`), and the files written from it: report.md, result.json, the
plots (PNG through matplotlib's Agg backend) and, for `reproduce all`, index.md."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cnnlab
from cnnlab import report
from cnnlab.checkpoint import write_text
from cnnlab.experiments.budget import Budget, setting_of
from cnnlab.experiments.paper import CLAIMS, PAPERS, TITLES
from cnnlab.experiments.plateau import early_caveat, trained_summary
from cnnlab.experiments.runner import Run
from cnnlab.experiments.verdict import Verdict, mean

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


SMOKE = "smoke test (--budget tiny): these numbers mean nothing and no verdict is given."


@dataclass
class ClaimResult:
    claim: str
    ours: str  # our number(s) in one line, for the index: the effect with its 95% CI
    verdict: Verdict
    setting: list[str]  # what was run, one bullet each
    table: list[list[str]]  # the measurements; first row is the header
    protocol: str = ""  # the paper's protocol for this claim (section, figure), in our words
    departures: list[str] = field(default_factory=list)  # every way our run differs from that protocol
    extra_tables: list[tuple[str, list[list[str]]]] = field(default_factory=list)  # (title, rows)
    plots: list[str] = field(default_factory=list)  # file names in the claim's folder
    notes: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)  # result.json: the measured numbers
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)  # the paired seeds (--seed-start N: N, N+1, ...)

    @property
    def seed_start(self) -> int:
        return self.seeds[0] if self.seeds else 0


def command(what: str, budget: Budget, seed_start: int = 0) -> str:
    """The `cnnlab reproduce` command a report or index came from (--seed-start only where not 0)."""
    start = f" --seed-start {seed_start}" if seed_start else ""
    return f"cnnlab reproduce {what} --budget {budget.name}{start}"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in body]


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _sentence(text: str) -> str:
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def scale_caveat(result: ClaimResult, budget: Budget) -> str:
    """What a verdict is about: this budget's scaled-down protocol, not the paper's (said on the verdict
    line itself, not only under Departures)."""
    n = len(result.departures)
    away = f"{n} departure{'s' if n != 1 else ''} from the paper's protocol, listed above" if n else "none"
    return f"(at the {budget.name} budget's scale, not the paper's ImageNet runs; {away})"


def write_report(result: ClaimResult, folder: Path, budget: Budget) -> Path:
    """report.md and result.json in `folder`; returns the report's path. A smoke-test budget's report says
    so in its first line and gives no verdict."""
    paper = CLAIMS[result.claim]
    head = [f"**{SMOKE[0].upper()}{SMOKE[1:]}**", ""] if budget.smoke else []
    if not budget.smoke and not budget.trained:
        head = [f"**{early_caveat(result.runs)}**", ""]
    lines = [
        *head,
        f"# {paper.title}",
        "",
        f"`{command(result.claim, budget, result.seed_start)}` (cnnlab {cnnlab.__version__}, "
        f"{report.format_seconds(result.seconds)}; paired seeds {', '.join(map(str, result.seeds))})",
        "",
        "## What the paper says",
        "",
        f"{paper.says} ({PAPERS[paper.paper]}, {paper.section})",
        "",
        f"**Paper's number:** {paper.number}",
        "",
    ]
    if result.protocol:
        lines += ["**The paper's protocol:** " + result.protocol, ""]
    lines += ["## What we ran", "", *(f"- {s}" for s in result.setting), ""]
    lines += ["## Departures from the paper's protocol", ""]
    lines += [f"- {d}" for d in result.departures] if result.departures else ["- none"]
    lines += [
        "",
        "## What we measured",
        "",
        f"**Ours:** {result.ours}",
        "",
        *_table(result.table),
        "",
    ]
    for title, rows in result.extra_tables:
        lines += [f"{title}:", "", *_table(rows), ""]
    lines += [f"![{p}]({p})\n" for p in result.plots]
    if not budget.smoke:
        lines += [f"## Verdict: {result.verdict.verdict} {scale_caveat(result, budget)}", "",
                  _sentence(result.verdict.reason), ""]  # fmt: skip
    if result.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in result.notes), ""]
    if result.runs:
        lines += [
            "## Runs",
            "",
            "Each folder holds config.json, metrics.csv, curves.png and checkpoints.",
            "",
        ]
        lines += [
            f"- {r.arm.label}, seed {r.seed}: `{_rel(r.dir, folder)}`" + (" (failed)" if r.failed else "")
            for r in result.runs
        ]
        lines.append("")
    path = folder / "report.md"
    write_text(path, "\n".join(lines))
    doc = {
        "claim": result.claim,
        "budget": budget.name,
        "smoke_test": budget.smoke,
        "seed_start": result.seed_start,
        "seeds": result.seeds,
        "paper": paper.number,
        "paper_values": paper.values,
        "ours": result.ours,
        "verdict": None if budget.smoke else result.verdict.verdict,
        "reason": None if budget.smoke else result.verdict.reason,
        "departures": result.departures,
        "numbers": result.numbers,
        "seconds": result.seconds,
    }
    write_text(folder / "result.json", json.dumps(_plain(doc), indent=2) + "\n")
    return path


def _plain(x: Any) -> Any:
    """JSON without NaN/inf (written as null)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_index(
    results: Sequence[tuple[ClaimResult, Path]],
    folder: Path,
    budget: Budget,
    wall_seconds: float | None = None,
    *,
    title: str = TITLES["alexnet"],
    group: str = "all",
    computed_rows: Sequence[list[str]] = (),
) -> Path:
    """index.md: one row per claim (paper, ours with its CI, verdict, departures), linking each report;
    `computed_rows` (claim link, paper, ours, verdict) first, in a table of their own: exact counts."""
    total = wall_seconds if wall_seconds is not None else sum(r.seconds for r, _ in results)
    if budget.smoke:
        rows = [["claim", "paper", "ours (smoke test)", "departures"]]
    else:
        rows = [["claim", "paper", "ours (95% CI over paired seeds)", "verdict", "departures"]]
    for r, report_path in results:
        link = f"[{r.claim}]({_rel(report_path, folder)})"
        departures = f"{len(r.departures)} (see report)" if r.departures else "none"
        verdict = [] if budget.smoke else [f"**{r.verdict.verdict}** (at the {budget.name} budget's scale)"]
        rows.append([link, CLAIMS[r.claim].number, r.ours, *verdict, departures])
    settled = sum(r.verdict.settled for r, _ in results)
    start = results[0][0].seed_start if results else 0
    head = [f"**{SMOKE[0].upper()}{SMOKE[1:]}**", ""] if budget.smoke else []
    every = [run for r, _ in results for run in r.runs]
    # The standard setting's runs: "baseline" also names paper-init's Kaiming control, whose setting at the
    # trained budgets is its own (1,500 steps at a constant lr), not the standard baseline's.
    standard = [run for r, _ in results if setting_of(r.claim) == "standard" for run in r.runs]
    if not budget.smoke and not budget.trained:  # the caveat comes first, with the error the nets reached
        head = [f"**{early_caveat(standard or every)}**", ""]
    elif not budget.smoke:  # whether the nets were trained, measured
        baselines = [run for run in standard if run.arm.name == "baseline"]
        head = [f"**{trained_summary(every, baselines)}**", ""]
    tally = [] if budget.smoke else [f"Settled: {settled} of {len(results)} claims.", ""]
    exact = (
        ["Counted exactly on the nets cnnlab builds (no training, no seeds):", "",
         *_table([["claim", "paper", "ours", "verdict"], *computed_rows]), "",
         "Trained at small scale:", ""]
        if computed_rows
        else []
    )  # fmt: skip
    lines = [
        *head,
        f"# {title}, reproduced at small scale",
        "",
        f"`{command(group, budget, start)}` (cnnlab {cnnlab.__version__}, "
        f"this invocation took {report.format_seconds(total)}; finished runs found in the runs folder are "
        "reused, not retrained). Each claim's report has the paper's protocol, our departures from it, every "
        "seed and the reason for its verdict. A claim is settled when the 95% interval of its effect "
        "excludes zero (reproduced or contradicted) or excludes the paper's effect size (no effect of the "
        "paper's size).",
        "",
        *tally,
        *exact,
        *_table(rows),
        "",
    ]
    path = folder / "index.md"
    write_text(path, "\n".join(lines))
    return path


# -- plots ----------------------------------------------------------------------------------------------


def plot_curves(
    path: Path,
    arms: Mapping[str, Sequence[Run]],
    keys: Sequence[tuple[str, str]],
    *,
    title: str,
    hline: tuple[float, str] | None = None,
    x_shift: float = 0.0,
) -> None:
    """One panel per (metrics column, panel title): each seed a thin line, the mean over seeds thick.
    Error columns (`*_err`) are drawn in percent; `hline` (value, label) marks a threshold on them;
    epoch e is drawn at e + x_shift (-0.5 puts an epoch's running mean at its middle)."""
    from matplotlib.ticker import MaxNLocator

    plt = report._pyplot()
    # Constrained layout keeps the figure's title clear of the panels' titles.
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False, layout="constrained"
    )
    longest = max((len(r.history) for runs in arms.values() for r in runs), default=1)
    for ax, (key, panel) in zip(axes[0], keys, strict=True):
        percent = key.endswith("_err")
        scale = 100.0 if percent else 1.0
        for color, (label, arm_runs) in zip(COLORS, arms.items(), strict=False):
            curves = [r.curve(key) for r in arm_runs if r.history]
            for c in curves:
                xs = [e + x_shift for e in range(1, len(c) + 1)]
                # Each seed's points marked too: a run of one epoch is a point, not an invisible line.
                ax.plot(xs, [scale * v for v in c], ".-", color=color, alpha=0.35, lw=1, ms=4)
            n = min((len(c) for c in curves), default=0)
            if n:
                avg = [scale * mean([c[i] for c in curves]) for i in range(n)]
                ax.plot(
                    [e + x_shift for e in range(1, n + 1)],
                    avg,
                    "o-",
                    color=color,
                    lw=2,
                    ms=3 if n > 1 else 7,
                    label=label,
                )
        if hline is not None and percent:
            ax.axhline(scale * hline[0], color="grey", ls="--", lw=1, label=hline[1])
        ax.set(xlabel="epoch", ylabel=panel + (" (%)" if percent else ""), title=panel)
        # Whole epochs on the axis, half an epoch of room either side (one epoch: not a 0.96-1.04 axis).
        if longest <= 12:
            epochs = range(1, longest + 1)
            ax.set_xticks([e + x_shift for e in epochs], labels=[str(e) for e in epochs])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5 + x_shift, longest + 0.5 + x_shift)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    report.save_figure(fig, path)
    plt.close(fig)


def plot_points(
    path: Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    xticks: Sequence[float] | None = None,
    xticklabels: Sequence[str] | None = None,
) -> None:
    """Each series' points (x, y); y are fractions shown as percent, the mean per x joined by a line."""
    plt = report._pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for color, (label, (xs, ys)) in zip(COLORS, series.items(), strict=False):
        ax.plot(xs, [100 * y for y in ys], "o", color=color, alpha=0.45, ms=4)
        ux = sorted(set(xs))
        means = [100 * mean([y for x, y in zip(xs, ys, strict=True) if x == u]) for u in ux]
        ax.plot(ux, means, "-", color=color, lw=2, label=label)
    if xticks is not None:
        ax.set_xticks(list(xticks), labels=list(xticklabels) if xticklabels else None)
    ax.set(xlabel=xlabel, ylabel=ylabel + " (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    report.save_figure(fig, path)
    plt.close(fig)
