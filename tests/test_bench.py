"""bench/: the timing helpers, and a smoke run of every benchmark script on a tiny budget.

No timing thresholds: the smoke runs check that each script runs end to end and prints its table of
ours, the peer and their ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conftest import needs_fashion_mnist  # noqa: E402

from bench import common, startup, tta  # noqa: E402


def test_interleave_alternates_and_keeps_extras() -> None:
    order: list[str] = []

    def a() -> dict[str, float]:
        order.append("a")
        return {"wait": 1.0}

    t = common.interleave({"a": a, "b": lambda: order.append("b")}, reps=3, warmup=1)
    # warm-up a b, then a b / b a / a b: the side that runs first alternates.
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert len(t.seconds["a"]) == len(t.seconds["b"]) == 3
    assert t.extra("a", "wait") == 1.0
    assert t.extras["b"] == [{}, {}, {}]
    assert len(t.pair_ratios("a", "b")) == 3


def test_update_benchmarks_md_replaces_only_its_block(tmp_path: Path) -> None:
    md = tmp_path / "B.md"
    md.write_text("# title\n\nintro\n")
    common.update_benchmarks_md("one", "first", md)
    common.update_benchmarks_md("two", "second", md)
    common.update_benchmarks_md("one", "first again", md)
    text = md.read_text()
    assert text.startswith("# title\n\nintro\n")
    assert "first again" in text and "first\n" not in text.replace("first again", "")
    assert text.index("first again") < text.index("second")
    assert text.count("<!-- bench:one -->") == 1


def test_table_is_markdown() -> None:
    lines = common.table(["a", "bb"], [[1, 2.5], ["xyz", ""]]).splitlines()
    assert len(lines) == 4 and set(lines[1]) <= {"|", "-"}
    assert all(line.count("|") == 3 for line in lines)


def test_time_to_counts_training_seconds_up_to_the_first_epoch_reaching_target() -> None:
    epochs = [
        {"epoch": 1, "epoch_s": 10.0, "test_acc": 0.90},
        {"epoch": 2, "epoch_s": 12.0, "test_acc": 0.935},
        {"epoch": 3, "epoch_s": 11.0, "test_acc": 0.94},
    ]
    assert tta.time_to(epochs, 0.93) == (22.0, 2)
    assert tta.time_to(epochs, 0.95) == (None, None)


def test_children_report_their_own_peak_memory() -> None:
    # 200 MiB touched in one child shows in its own peak and its sampled PSS, not in the next child's.
    code = (
        "import numpy as np, time; from bench.common import peak_rss_mib; a = np.ones({} * 2**20, np.uint8); "
    )
    code += "time.sleep(0.6); print('{{\"rss\": %f}}' % peak_rss_mib())"
    big = common.run_child(["-c", code.format(200)])
    small = common.run_child(["-c", code.format(1)])
    assert big.returncode == small.returncode == 0
    rss_big, rss_small = (common.last_json_line(c.stdout)["rss"] for c in (big, small))
    assert rss_big > rss_small + 150
    assert big.tree_pss_mib > small.tree_pss_mib + 150


def _run(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_startup_table_is_a_ratio_to_importing_torch() -> None:
    seconds = {"python -c pass": [0.1], startup.PEER: [4.0], **{name: [0.2] for name in startup.CASES}}
    text = startup.markdown(common.Timings(seconds), reps=1)
    assert "| cnnlab models" in text and "**0.05**" in text and "import torch" in text


@pytest.mark.slow
def test_startup_benchmark_runs_end_to_end() -> None:
    before = common.BENCHMARKS_MD.read_text()
    proc = _run("bench.startup", "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio to import torch" in proc.stdout
    assert "Command: `python -m bench.startup --quick`" in proc.stdout
    assert common.BENCHMARKS_MD.read_text() == before


def test_eval_precision_times_each_case_of_a_checkpoint_and_gives_its_error(tmp_path: Path) -> None:
    from test_train import tiny

    from cnnlab.training import train

    train(tiny(tmp_path / "run", epochs=1))
    proc = _run("bench.eval_precision", "--quick", "--checkpoint", str(tmp_path / "run/checkpoints/last.pt"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if "median" in line]
    assert [r.split("  ")[0] for r in rows] == [
        "fp32, channels-first net", "fp32, channels-last net", "bf16 autocast, channels-last"
    ]  # fmt: skip
    assert all("359 images" in r and "test top-1 error" in r for r in rows), proc.stdout  # digits test
    assert "channels-first fp32 takes" in proc.stdout


def test_gpu_script_says_why_it_cannot_run_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = _run("bench.gpu")
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize(
    "argv",
    [
        ("bench.train_step", "--quick", "--threads", "1"),
        ("bench.pipeline", "--quick", "--threads", "1"),
        ("bench.tta", "--quick", "--threads", "1"),
        ("bench.gpu", "--quick", "--allow-cpu", "--no-compile", "--threads", "1", "--workers", "0"),
    ],
    ids=["train_step", "pipeline", "tta", "gpu-on-cpu"],
)
def test_benchmark_runs_end_to_end(argv: tuple[str, ...]) -> None:
    before = common.BENCHMARKS_MD.read_text() if common.BENCHMARKS_MD.exists() else None
    proc = _run(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "ratio" in out and "|---" in out.replace("| ---", "|---")
    assert f"Command: `python -m {argv[0]} --quick" in out
    # --quick never rewrites BENCHMARKS.md (its numbers mean nothing).
    after = common.BENCHMARKS_MD.read_text() if common.BENCHMARKS_MD.exists() else None
    assert before == after
