"""The papers' claims as commands: `cnnlab reproduce CLAIM|all|all-vgg|all-googlenet [--budget ...]`.

Each trained claim's module trains the arms it compares through the common runner (`runner.Runner`, which
calls `cnnlab.train.train`), measures, and returns a `ClaimResult`; this module writes its report.md, plots
and result.json. The successors' claims that need no training (`computed.COMPUTED`) are counted exactly on
the nets cnnlab builds and printed. The papers' numbers live in `paper.CLAIMS`, the verdict rules in
`verdict`, the budgets in `budget`. `all` is the AlexNet paper's claims; `all-vgg` and `all-googlenet` the
successors'. See docs/claims.md and docs/successors.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from cnnlab import data, models, outfiles
from cnnlab.errors import CnnlabError
from cnnlab.experiments import budget as budgets
from cnnlab.experiments import (
    computed,
    dropout,
    ensemble,
    googlenet_aux,
    lrn,
    overlap,
    paper_init,
    pca,
    relu_tanh,
    tencrop,
    vgg_depth,
    vgg_lrn,
)
from cnnlab.experiments.context import Experiment
from cnnlab.experiments.paper import CLAIMS, TITLES
from cnnlab.experiments.plan import Plan, planned
from cnnlab.experiments.results import SMOKE, ClaimResult, write_index, write_report

__all__ = ["CLAIMS", "CLAIM_MODULES", "GROUPS", "ClaimResult", "reproduce", "reproduce_all"]

# Claim id -> module with `run(Experiment) -> ClaimResult`, in the order `all` runs them.
CLAIM_MODULES: dict[str, ModuleType] = {
    "relu-vs-tanh": relu_tanh,
    "lrn": lrn,
    "overlapping-pooling": overlap,
    "pca-lighting": pca,
    "dropout": dropout,
    "ten-crop": tencrop,
    "ensemble": ensemble,
    "paper-init": paper_init,
    "vgg-depth": vgg_depth,
    "vgg-lrn": vgg_lrn,
    "googlenet-aux": googlenet_aux,
}
COMPUTED = computed.COMPUTED
assert set(CLAIM_MODULES) | set(COMPUTED) == set(CLAIMS) and not set(CLAIM_MODULES) & set(COMPUTED), (
    "every claim in paper.CLAIMS needs a module or a computation, and vice versa"
)
# The groups `reproduce` runs in one go, each claim in paper.CLAIMS order: `all` keeps its meaning (the
# AlexNet paper's claims); the successors' groups run their computed claims first (instant).
GROUPS: dict[str, list[str]] = {
    ("all" if paper == "alexnet" else f"all-{paper}"): [c for c in CLAIMS if CLAIMS[c].paper == paper]
    for paper in TITLES
}


def _log(text: str) -> None:
    print(text, flush=True)


def _mkdir(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnlabError(f"cannot create {folder} ({exc.strerror}); choose another --out") from exc
    return folder


REPORT_MARKER = ".cnnlab-reproduce"  # in a report folder reproduce made: its report files are its own


def _check_report_folder(folder: Path, force: bool) -> None:
    """Refuse, touching nothing, an existing report folder reproduce did not make (no marker) that holds
    anything: its files are never replaced without --force (the rule of every command that writes,
    cnnlab/outfiles.py)."""
    if folder.is_dir() and not _marked(folder) and any(folder.iterdir()) and not force:
        raise CnnlabError(
            f"--out {folder} holds files `cnnlab reproduce` did not write, and reproduce writes report.md, "
            "result.json, pictures and index.md there: choose a new or empty folder, or pass --force to "
            "replace files of those names"
        )


def _marked(folder: Path) -> bool:
    marker = folder / REPORT_MARKER
    return marker.is_file() and not marker.is_symlink()


def _report_folder(folder: Path, force: bool) -> Path:
    """The report folder (`_check_report_folder`), made if missing and marked as reproduce's."""
    _check_report_folder(folder, force)
    _mkdir(folder)
    if not _marked(folder):
        outfiles.write_text(
            folder / REPORT_MARKER, "written by cnnlab reproduce: its reports here are rewritten by it\n"
        )
    return folder


def _experiment(claim: str, folder: Path, runs_dir: Path, **options: Any) -> Experiment:
    if claim not in CLAIM_MODULES:
        choices = ", ".join([*CLAIMS, *GROUPS])
        raise CnnlabError(f"unknown claim {claim!r}; choose one of {choices}")
    b = budgets.get(options.pop("budget"))
    seeds = options.pop("seeds", None)
    seeds = budgets.seeds_for(b, claim) if seeds is None else seeds
    if seeds < 1:
        raise CnnlabError(f"--seeds must be at least 1, got {seeds}")
    start = options.pop("seed_start", 0) or 0
    if start < 0:
        raise CnnlabError(f"--seed-start must be 0 or more, got {start}")
    own = getattr(CLAIM_MODULES[claim], "MODEL", None)  # the successors' claims train their own nets
    asked = options.pop("model", None)
    if own is not None and asked not in (None, own):
        raise CnnlabError(f"--model applies to the AlexNet claims; {claim} trains {own} (leave --model out)")
    model = own or asked or budgets.default_model(b)
    models.info(model)  # an unknown name fails here, with the list of models
    return Experiment(
        claim,
        b,
        options.pop("dataset", None) or b.dataset,
        model,
        list(range(start, start + seeds)),
        _mkdir(folder),
        runs_dir,
        **options,
    )


def _plan(claims: list[str], log: Callable[[str], None], **options: Any) -> Plan:
    """The plan of `claims` (the trained ones) at these options, its line printed."""
    b = budgets.get(options["budget"])
    trained = [c for c in claims if c in CLAIM_MODULES]
    plan = Plan(
        planned(
            trained, b, dataset=options.get("dataset") or b.dataset,
            model=options.get("model") or budgets.default_model(b), seeds=options.get("seeds"),
            seed_start=options.get("seed_start") or 0,
        )
    )  # fmt: skip
    log(plan.line())
    return plan


def _run(exp: Experiment) -> tuple[ClaimResult, Path]:
    seeds = f"seed{'s' if len(exp.seeds) != 1 else ''} {', '.join(map(str, exp.seeds))}"
    model = budgets.FIGURE1_MODEL if exp.claim == "relu-vs-tanh" else exp.model
    exp.log(f"== {exp.claim}: budget {exp.budget.name}, {exp.dataset}, {model}, {seeds}")
    t0 = time.perf_counter()
    with data.shared_loads():  # one read of the data set for all the claim's runs
        result: ClaimResult = CLAIM_MODULES[exp.claim].run(exp)
    result.seconds = time.perf_counter() - t0
    path = write_report(result, exp.folder, exp.budget)
    if exp.budget.smoke:
        exp.log(f"{exp.claim}: {SMOKE} {result.ours}")
    else:
        exp.log(f"{exp.claim}: {result.verdict.verdict}. {result.ours}")
    exp.log(f"report: {path}")
    return result, path


def reproduce(
    claim: str,
    *,
    budget: str = "medium",
    dataset: str | None = None,
    seeds: int | None = None,
    seed_start: int = 0,
    out: str | Path | None = None,
    runs_dir: str | Path | None = None,
    model: str | None = None,
    device: str = "auto",
    data_dir: str | None = None,
    progress: str = "none",
    fresh: bool = False,
    log: Callable[[str], None] = _log,
    download: bool = False,
    skip_bad_images: bool = False,
    force: bool = False,
) -> tuple[ClaimResult, Path]:
    """Run one claim's experiment; writes OUT/report.md (+ plots, result.json), the runs in `runs_dir`
    (default OUT/runs; several claims pointed at one folder share the runs they have in common). The paired
    seeds are `seed_start`, `seed_start` + 1, ...: a disjoint set replicates a table. An OUT
    reproduce did not make is refused when it holds anything, unless `force`."""
    folder = Path(out) if out else Path("runs") / f"reproduce-{budget}" / claim
    _check_report_folder(folder, force)
    runs = Path(runs_dir) if runs_dir else folder / "runs"
    budgets.get(budget)  # an unknown budget fails before the plan
    plan = _plan(
        [claim], log, budget=budget, dataset=dataset, model=model, seeds=seeds, seed_start=seed_start
    )
    exp = _experiment(
        claim, folder, runs, budget=budget, dataset=dataset, seeds=seeds, seed_start=seed_start, model=model,
        device=device, data_dir=data_dir, progress=progress, fresh=fresh, log=log, download=download,
        skip_bad_images=skip_bad_images, plan=plan,
    )  # fmt: skip
    _report_folder(folder, force)
    return _run(exp)


def reproduce_all(
    *,
    budget: str = "medium",
    out: str | Path | None = None,
    runs_dir: str | Path | None = None,
    log: Callable[[str], None] = _log,
    group: str = "all",
    force: bool = False,
    **options: Any,
) -> tuple[list[ClaimResult], Path]:
    """Every claim of `group` (`all`: the AlexNet paper's), sharing one runs folder (default OUT/runs),
    each report in OUT/CLAIM/; then OUT/index.md. The computed claims come first, in the index too. An
    OUT (or OUT/CLAIM) reproduce did not make is refused when it holds anything, unless `force`."""
    if group not in GROUPS:
        raise CnnlabError(f"unknown group {group!r}; choose one of {', '.join(GROUPS)}")
    t0 = time.perf_counter()
    suffix = "" if group == "all" else f"-{group.removeprefix('all-')}"
    root = _report_folder(Path(out) if out else Path("runs") / f"reproduce-{budget}{suffix}", force)
    runs = Path(runs_dir) if runs_dir else root / "runs"
    exact = [
        (computed.run(claim, _report_folder(root / claim, force), log=log), root / claim / "report.md")
        for claim in GROUPS[group]
        if claim in COMPUTED
    ]
    done: list[tuple[ClaimResult, Path]] = []
    budgets.get(budget)  # an unknown budget fails before the plan
    plan = _plan(GROUPS[group], log, budget=budget, **options)
    with data.shared_loads():  # every claim's runs share one read of the data set
        for claim in GROUPS[group]:
            if claim in CLAIM_MODULES:
                _report_folder(root / claim, force)
                exp = _experiment(claim, root / claim, runs, budget=budget, log=log, plan=plan, **options)
                done.append(_run(exp))
    paper = CLAIMS[GROUPS[group][0]].paper
    index = write_index(
        done, root, budgets.get(budget), time.perf_counter() - t0, title=TITLES[paper], group=group,
        computed_rows=[computed.index_row(c, path, root) for c, path in exact],
    )  # fmt: skip
    log(f"index: {index}")
    return [r for r, _ in done], index


def compute(claim: str, out: str | Path | None = None, force: bool = False) -> computed.Computed:
    """A claim counted exactly, without training (`COMPUTED`): printed, and with `out` written to
    OUT/report.md and OUT/result.json (an OUT reproduce did not make is refused unless `force`)."""
    return computed.run(claim, _report_folder(Path(out), force) if out else None)
