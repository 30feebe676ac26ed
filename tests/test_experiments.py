"""`cnnlab reproduce`: the verdict rules on synthetic numbers, the measurements' arithmetic, and every
claim's machinery end to end on the tiny budget (scikit-learn's digits, a few hundred images).

The claim tests share one runs folder per worker, as `reproduce all` does, so the baseline runs the
standard-setting claims have in common are trained once.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from cnnlab import cli
from cnnlab.experiments import CLAIM_MODULES, budget, dropout, ensemble, paper_init, relu_tanh, reproduce
from cnnlab.experiments.paper import CLAIMS
from cnnlab.experiments.runner import Arm, Runner
from cnnlab.experiments.verdict import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    VERDICTS,
    Verdict,
    combine,
    compare,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _cmp(claimed: list[float], other: list[float], paired: bool = False) -> Verdict:
    return compare(claimed, other, what="error", claimed_label="A", other_label="B", paired=paired)


# -- verdicts on synthetic numbers ----------------------------------------------------------------------


def test_clear_gain_in_the_papers_direction_is_reproduced() -> None:
    v = _cmp([0.100, 0.110, 0.105], [0.150, 0.160, 0.155])
    assert v.verdict == REPRODUCED
    assert "5.00 points" in v.reason  # the mean difference is stated


def test_clear_loss_is_not_reproduced() -> None:
    v = _cmp([0.150, 0.160, 0.155], [0.100, 0.110, 0.105])
    assert v.verdict == NOT_REPRODUCED
    assert "opposite" in v.reason


def test_difference_within_the_seed_spread_is_inconclusive() -> None:
    v = _cmp([0.10, 0.14], [0.11, 0.15])  # 1 point apart, seeds 4 points apart
    assert v.verdict == INCONCLUSIVE
    assert "spread" in v.reason


def test_one_seed_is_inconclusive_however_large_the_difference() -> None:
    v = _cmp([0.10], [0.50])
    assert v.verdict == INCONCLUSIVE
    assert "one seed" in v.reason


def test_paired_comparison_uses_the_spread_of_the_differences() -> None:
    # The same three nets measured two ways: the nets differ a lot, the gain is the same for each.
    centre, tencrop = [0.20, 0.30, 0.25], [0.19, 0.29, 0.24]
    assert _cmp(tencrop, centre).verdict == INCONCLUSIVE
    assert _cmp(tencrop, centre, paired=True).verdict == REPRODUCED


def test_failed_runs_are_left_out_and_said_so() -> None:
    v = _cmp([0.10, 0.11, math.nan], [0.20, 0.21, 0.22])
    assert v.verdict == REPRODUCED
    assert "1 failed run left out" in v.reason
    assert _cmp([math.nan], [0.2]).verdict == INCONCLUSIVE


def test_combined_verdict_needs_every_part() -> None:
    yes, no, maybe = Verdict(REPRODUCED, "a"), Verdict(NOT_REPRODUCED, "b"), Verdict(INCONCLUSIVE, "c")
    assert combine([("x", yes), ("y", yes)]).verdict == REPRODUCED
    assert combine([("x", yes), ("y", maybe)]).verdict == INCONCLUSIVE
    assert combine([("x", maybe), ("y", no)]).verdict == NOT_REPRODUCED
    assert "x: reproduced (a)" in combine([("x", yes), ("y", no)]).reason


def test_paper_init_verdict_counts_seeds_that_train() -> None:
    assert paper_init.judge([True, True], 0.9).verdict == REPRODUCED
    assert paper_init.judge([False, False], 0.9).verdict == NOT_REPRODUCED
    assert paper_init.judge([True, False], 0.9).verdict == INCONCLUSIVE
    # A control that did not train either means the budget cannot tell.
    assert paper_init.judge([False, False], 0.9, control=[True, True]).verdict == NOT_REPRODUCED
    assert paper_init.judge([False, False], 0.9, control=[True, False]).verdict == INCONCLUSIVE
    # Both N(0, 0.01) variants flat while Kaiming trains: the budget is too short, not bias 1's fault.
    both_flat = paper_init.judge([False, False], 0.9, control=[True, True], same_scale=[False, False])
    assert both_flat.verdict == INCONCLUSIVE and "too short" in both_flat.reason
    bias01_trains = paper_init.judge([False, False], 0.9, control=[True, True], same_scale=[True, False])
    assert bias01_trains.verdict == NOT_REPRODUCED


# -- measurements ---------------------------------------------------------------------------------------


def test_epochs_to_threshold_interpolates_between_epoch_midpoints() -> None:
    # (0, 0.9) (0.5, 0.6) (1.5, 0.4) (2.5, 0.2): 0.3 is crossed half way from 1.5 to 2.5.
    assert relu_tanh.epochs_to([0.6, 0.4, 0.2], 0.3, 0.9) == pytest.approx(2.0)
    assert relu_tanh.epochs_to([0.2], 0.3, 0.9) == pytest.approx(0.5 * 0.6 / 0.7)
    assert relu_tanh.epochs_to([0.6, 0.5], 0.3, 0.9) == math.inf


def test_converged_epoch_is_the_first_within_tolerance_of_the_best() -> None:
    assert dropout.converged_epoch([0.5, 0.3, 0.2, 0.21, 0.25]) == 3
    assert dropout.converged_epoch([0.5, 0.204, 0.2]) == 2  # within 0.5 points
    assert dropout.converged_epoch([0.3]) == 1


def test_ensemble_sizes_and_subsets() -> None:
    assert ensemble.sizes(5) == [1, 3, 5]
    assert ensemble.sizes(7) == [1, 3, 5, 7]
    assert ensemble.sizes(2) == [1, 2]
    assert len(ensemble.subsets(5, 3)) == 10
    many = ensemble.subsets(12, 6)
    assert len(many) == ensemble.MAX_SUBSETS and len(set(many)) == len(many)


def test_every_claim_has_a_module_a_paper_number_and_budgets_name_a_threshold() -> None:
    assert set(CLAIM_MODULES) == set(CLAIMS)
    assert all(CLAIMS[c].number and CLAIMS[c].section for c in CLAIMS)
    assert budget.threshold("cifar10") == CLAIMS["relu-vs-tanh"].values["threshold"]
    for b in budget.BUDGETS.values():
        for kind in budget.SETTINGS:
            fields = budget.setting(b, kind, dataset=b.dataset, model="alexnet_small")
            assert fields["model"] == "alexnet_small" and fields["input_size"] > 0


# -- the machinery on the tiny budget -------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("claim-runs")


def _reproduce(claim: str, out: Path, runs: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(["reproduce", claim, "--budget", "tiny", "--out", str(out), "--runs", str(runs)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.parametrize("claim", list(CLAIM_MODULES))
def test_claim_writes_a_report_with_paper_ours_and_verdict(
    claim: str, tmp_path: Path, shared_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _reproduce(claim, tmp_path / claim, shared_runs, capsys)
    text = (tmp_path / claim / "report.md").read_text()
    result = json.loads((tmp_path / claim / "result.json").read_text())
    assert CLAIMS[claim].number in text
    ours = re.search(r"\*\*Ours:\*\* (.+)", text)
    assert ours is not None and re.search(r"\d", ours.group(1))  # a measured number
    verdict = re.search(r"## Verdict: (.+)", text)
    assert verdict is not None and verdict.group(1) in VERDICTS
    assert result["verdict"] == verdict.group(1) and result["claim"] == claim
    assert result["numbers"]
    assert f"{claim}: {result['verdict']}" in out
    plots = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert plots
    for p in plots:
        assert (tmp_path / claim / p).read_bytes()[:8] == PNG
    for link in re.findall(r"`(runs/[^`]+|\.\./[^`]+)`", text):  # each listed run folder exists
        assert (tmp_path / claim / link / "metrics.csv").is_file()


def test_finished_runs_are_reused(tmp_path: Path, shared_runs: Path) -> None:
    lines: list[str] = []
    first, _ = reproduce("lrn", budget="tiny", out=tmp_path / "a", runs_dir=shared_runs, log=lines.append)
    lines.clear()
    again, _ = reproduce("lrn", budget="tiny", out=tmp_path / "b", runs_dir=shared_runs, log=lines.append)
    run_lines = [ln for ln in lines if ln.startswith("  ")]
    assert run_lines and all("(reused)" in ln for ln in run_lines)
    assert again.ours == first.ours and again.verdict == first.verdict


def test_plot_titles_count_seeds_in_words(
    tmp_path: Path, shared_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnlab.experiments import ablation
    from cnnlab.experiments.verdict import plural

    assert (plural(1, "seed"), plural(2, "seed"), plural(0, "net")) == ("1 seed", "2 seeds", "0 nets")
    titles: list[str] = []
    monkeypatch.setattr(ablation, "plot_curves", lambda *a, title, **k: titles.append(title))
    reproduce("lrn", budget="tiny", out=tmp_path / "a", runs_dir=shared_runs, log=lambda line: None)
    assert titles and titles[0].endswith("(digits, 1 seed)"), titles


def test_a_diverging_run_is_recorded_not_fatal(tmp_path: Path) -> None:
    fields = budget.setting(budget.get("tiny"), "standard", dataset="digits", model="alexnet_small")
    runner = Runner(tmp_path, {**fields, "lr": 1e12, "epochs": 2, "dropout": 0.0}, log=lambda _: None)
    run = runner.run(Arm("blowup", "blow-up"), 0)
    assert run.failed and "non-finite" in run.failed
    assert math.isnan(run.last("val_top1_err"))
    assert (run.dir / "failed.txt").is_file()
    assert runner.run(Arm("blowup", "blow-up"), 0).reused  # not retrained


def test_user_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:  # refused by argparse, as any bad flag value
        cli.main(["reproduce", "lrn", "--budget", "tiny", "--seeds", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--seeds: 0 is not a whole number >= 1" in capsys.readouterr().err
    assert cli.main(["reproduce", "lrn", "--budget", "tiny", "--model", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["reproduce", "no-such-claim"])
    assert exc.value.code == 2


@pytest.mark.slow
def test_reproduce_all_writes_the_index(
    tmp_path: Path, shared_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _reproduce("all", tmp_path, shared_runs, capsys)
    index = (tmp_path / "index.md").read_text()
    for claim in CLAIM_MODULES:
        row = next(ln for ln in index.splitlines() if ln.startswith(f"| [{claim}]"))
        assert CLAIMS[claim].number in row
        assert any(f"**{v}**" in row for v in VERDICTS)
        assert (tmp_path / claim / "report.md").is_file()
