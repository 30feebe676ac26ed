"""Output that cannot be written, and memory the process may not use, end in one line or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _reliability import assert_one_line_error, run_cli, subprocess_env, tiny_argv

from cnnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("out")
    assert main(tiny_argv(root / "run", 1)) == 0
    return root / "run" / "checkpoints" / "last.pt"


def _sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # two subprocess runs and exports
@pytest.mark.parametrize("stdout", [">&-", ">/dev/full"])
def test_a_closed_or_full_stdout_never_stops_an_export_or_a_run(
    ckpt: Path, tmp_path: Path, stdout: str
) -> None:
    if stdout == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    py = f"{sys.executable} -m cnnlab"
    export = _sh(f"{py} export {ckpt} --format safetensors -o {tmp_path / 'm.st'} {stdout}", ROOT)
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "m.st").is_file() and "Traceback" not in export.stderr
    argv = " ".join(tiny_argv(tmp_path / "run", 1)).replace("--progress none", "--progress lines")
    run = _sh(f"{py} {argv} {stdout}", ROOT)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "summary.txt").is_file() and "Traceback" not in run.stderr


def test_the_address_space_limit_counts_as_memory(tmp_path: Path) -> None:
    """Under `prlimit --as`, check_fits compares with what the limit leaves, not the machine's memory."""
    code = (
        "import resource\nimport torch\n"
        "from cnnlab import limits\n"
        "from cnnlab.errors import CnnlabError\n"
        "mapped = limits._status_bytes('VmSize:')\n"
        "resource.setrlimit(resource.RLIMIT_AS, (mapped + 2**30, resource.RLIM_INFINITY))\n"
        "assert limits.available_memory() <= 2**30, limits.available_memory()\n"
        "try:\n"
        "    limits.check_fits(2 * 2**30, 'a 2 GiB batch', 'lower --batch-size')\n"
        "except CnnlabError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "a 2 GiB batch needs about 2 GiB" in done.stdout


def test_an_allocation_failure_is_one_line(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An allocation no size check foresaw: torch's multi-line C++ message becomes one line."""
    from cnnlab import export

    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
            "allocate 2147483648 bytes.\nException raised from alloc_cpu at ../c10/core/impl/alloc_cpu.cpp"
            "\nframe #0: c10::Error::Error(...)\n" + "frame #1: ...\n" * 100
        )

    monkeypatch.setattr(export, "_safetensors", fails)
    line = assert_one_line_error(
        *run_cli(["export", str(ckpt), "--format", "safetensors", "-o", str(tmp_path / "m.st")], capsys)[::2]
    )
    assert "out of memory" in line and "can't allocate memory" in line and "frame" not in line


def test_torch_s_multi_line_messages_are_cut_to_their_first_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = tmp_path / "net.py"
    net.write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        raise RuntimeError('bad size\\nException raised from x at y.cpp\\n'\n"
        "                           + 'frame #1: c10\\n' * 200)\n"
    )
    line = assert_one_line_error(*run_cli(["check", f"{net}:Net", "--against", "alexnet_small"], capsys)[::2])
    assert "bad size" in line and "frame" not in line and len(line) < 400


def test_class_names_are_drawn_as_plain_text() -> None:
    """A class name like `$\\frac{$` (a folder name) is not TeX: the picture is drawn, not a traceback."""
    from cnnlab import report

    png = report.confusion_png([[3, 1], [0, 2]], ["$\\frac{$", "$a_b$ and $"], "test $ split")
    assert png[:4] == b"\x89PNG"


def test_a_network_torchview_cannot_trace_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnlab import diagram

    monkeypatch.setattr(diagram.shutil, "which", lambda name: "/usr/bin/dot")  # graphviz need not be here
    net = tmp_path / "net.py"
    net.write_text(
        "import torch\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 2)\n"
        "    def forward(self, x):\n        raise ValueError('data-dependent: cannot trace')\n"
    )
    argv = ["diagram", f"{net}:Net", "--input-size", "1x2x2", "-o", str(tmp_path / "d.svg")]
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "cannot trace" in line and not (tmp_path / "d.svg").exists()
