"""`pip install cnnlab` without extras: each command that needs an optional package ends in one line naming
the pip command (exit 2); the extras in pyproject.toml are the ones the code names; a wheel built from the
tree holds the model catalog, and building it leaves nothing in the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _reliability import assert_one_line_error, run_cli, tiny_argv

from cnnlab import extras
from cnnlab.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """`module` as if not installed: importing it raises ModuleNotFoundError (a None entry in sys.modules)."""
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packaging")
    assert main(tiny_argv(root / "run", 1, "--input-size", "28")) == 0
    return root / "run" / "checkpoints" / "last.pt"


@pytest.mark.parametrize("module", ["torchview", "graphviz"])
def test_diagram_without_its_extra_names_the_pip_command(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, module)
    out = tmp_path / "d.svg"
    code, _, err = run_cli(["diagram", "alexnet_small", "-o", str(out)], capsys)
    line = assert_one_line_error(code, err)
    assert f"needs the Python package {module}" in line and "pip install 'cnnlab[diagram]'" in line
    assert not out.exists()


@pytest.mark.parametrize("module", ["onnx", "onnxscript"])
def test_onnx_export_without_its_extra_names_the_pip_command(
    module: str,
    ckpt: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _hide(monkeypatch, module)
    out = tmp_path / "m.onnx"
    code, _, err = run_cli(["export", str(ckpt), "--format", "onnx", "-o", str(out)], capsys)
    line = assert_one_line_error(code, err)
    assert f"needs the Python package {module}" in line and "pip install 'cnnlab[onnx]'" in line
    assert not out.exists()
    # The formats that need no extra still work.
    code, _, err = run_cli(
        ["export", str(ckpt), "--format", "safetensors", "-o", str(tmp_path / "m.st")], capsys
    )
    assert code == 0, err


def test_training_without_tensorboard_says_so_once_and_writes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "tensorboard")
    code, out, err = run_cli(tiny_argv(tmp_path / "run", 1, "--progress", "lines"), capsys)
    assert code == 0, err
    notes = [line for line in out.splitlines() if "TensorBoard" in line]
    assert notes == [
        "note: no TensorBoard events: tensorboard is not installed (pip install 'cnnlab[tensorboard]')"
    ]
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert not list((tmp_path / "run").glob("tensorboard/*"))


def test_the_extras_the_code_names_are_pyprojects() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]
    for module, extra in extras.EXTRA.items():
        # The distribution's name is the module's for every optional package cnnlab imports.
        assert any(req.split(">")[0].split("=")[0] == module for req in declared[extra]), (module, extra)
    assert set(declared["all"][0].partition("[")[2].rstrip("]").split(",")) == set(extras.EXTRA.values())
    assert "cnnlab[all]" in declared["dev"]
    core = " ".join(project["dependencies"])
    assert not any(module in core for module in extras.EXTRA), "an optional package in the core dependencies"


def _source_copy(dest: Path) -> Path:
    """What an sdist or a checkout holds, without anything a previous build or run left behind."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("cnnlab", "build_backend"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


@pytest.mark.slow
def test_a_wheel_built_from_the_tree_holds_the_catalog_and_leaves_no_build_folder(tmp_path: Path) -> None:
    src = _source_copy(tmp_path / "src")
    before = sorted(p.name for p in src.iterdir())
    # No build isolation: the venv's setuptools (dev extra) builds it without the network.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
         str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in src.iterdir()) == before  # no build/, no cnnlab.egg-info/
    (wheel,) = (tmp_path / "dist").glob("cnnlab-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert "cnnlab/models/catalog.json" in z.namelist()
        z.extractall(tmp_path / "site")
    # `cnnlab models` from the wheel alone: another working folder, only the wheel on the path.
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    run = subprocess.run(
        [sys.executable, "-c", "import cnnlab, sys; print(cnnlab.__file__); sys.argv[1:] = ['models']; "
         "from cnnlab.cli import main; sys.exit(main(['models']))"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[0].startswith(str(tmp_path / "site"))
    assert "alexnet_fast" in run.stdout and "vgg16" in run.stdout
