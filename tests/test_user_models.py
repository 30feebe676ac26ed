"""Your own network wherever a model name is taken: `file.py:Class` and `package.module:attr`."""

from __future__ import annotations

from pathlib import Path

import pytest
from _reliability import assert_one_line_error, run_cli
from conftest import needs_dot
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.user import is_user_spec, load_user_model, parse_kwargs

NET = """
import torch
from torch import nn
from helpers import WIDTH  # a sibling module: the file's folder is importable while it loads

class Tiny(nn.Module):
    def __init__(self, num_classes=10, width=WIDTH):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))

def build(depth):
    return Tiny(width=depth)

def broken():
    raise ValueError("no such layer")

BUILT = Tiny()
NOT_A_NET = 42
"""


@pytest.fixture
def net_file(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text("WIDTH = 8\n")
    path = tmp_path / "mynet.py"
    path.write_text(NET)
    return path


def test_load_a_class_a_function_and_an_instance(net_file: Path) -> None:
    model = load_user_model(f"{net_file}:Tiny", num_classes=3)
    assert isinstance(model, nn.Module) and model.fc.out_features == 3
    assert model.source == f"{net_file}:Tiny"
    assert load_user_model(f"{net_file}:build", depth=4).conv.out_channels == 4
    assert load_user_model(f"{net_file}:BUILT").fc.out_features == 10
    assert load_user_model("torchvision.models:alexnet", num_classes=7).classifier[-1].out_features == 7


@pytest.mark.parametrize(
    ("attr", "kwargs", "message"),
    [
        ("Nope", {}, r"has no 'Nope': it defines Tiny, build, broken"),
        ("broken", {}, r"building broken\(\) failed: ValueError: no such layer \(mynet.py line \d+\)"),
        ("Tiny", {"colour": 1}, r"building Tiny\(colour=1\) failed: TypeError"),
        ("NOT_A_NET", {}, "is a int, not a network class or function"),
        ("BUILT", {"num_classes": 3}, "already a built network"),
    ],
)
def test_one_line_errors(net_file: Path, attr: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CnnlabError, match=message) as err:
        load_user_model(f"{net_file}:{attr}", **kwargs)
    assert "\n" not in str(err.value)


def test_missing_file_import_failure_and_missing_module(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="no such Python file"):
        load_user_model(f"{tmp_path / 'none.py'}:Net")
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\nraise RuntimeError('oops')\n")
    with pytest.raises(CnnlabError, match=r"importing .*bad.py failed: RuntimeError: oops \(bad.py line 3\)"):
        load_user_model(f"{bad}:Net")
    with pytest.raises(CnnlabError, match=r"no module 'not_a_package_xyz\.models'"):
        load_user_model("not_a_package_xyz.models:Net")


def test_spec_forms_and_kwargs() -> None:
    assert is_user_spec("net.py:AlexNet") and is_user_spec("pkg.mod:attr")
    assert not is_user_spec("alexnet") and not is_user_spec("net.py:")
    assert parse_kwargs(["num_classes=10", "p=0.5", "name=abc", "k=(3, 3)", "on=True"]) == {
        "num_classes": 10, "p": 0.5, "name": "abc", "k": (3, 3), "on": True,
    }  # fmt: skip


def test_summary_and_compare_take_a_user_network(net_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["summary", f"{net_file}:Tiny", "--input-size", "3x16x16"], capsys)
    assert code == 0 and "your network" in out and "total params: 314" in out
    argv = ["compare", "lenet5", f"{net_file}:Tiny", "--input-size", "3x32x32", "--steps", "1",
            "--warmup", "0", "--batch-size", "4", "--num-classes", "10"]  # fmt: skip
    code, out, _ = run_cli(argv, capsys)
    assert code == 0, out
    assert f"{net_file}:Tiny vs lenet5" in out
    line = assert_one_line_error(*run_cli(["summary", f"{net_file}:Nope"], capsys)[::2])
    assert "has no 'Nope'" in line
    line = assert_one_line_error(*run_cli(["compare", "alexnet", "gone.py:Net", "--no-timing"], capsys)[::2])
    assert "gone.py: no such Python file" in line


@needs_dot
def test_diagram_of_a_user_network(
    net_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net.svg"
    code, _, err = run_cli(["diagram", f"{net_file}:Tiny", "-o", str(out), "--input-size", "3x16x16"], capsys)
    assert code == 0, err
    assert "conv" in out.read_text()
