"""`cnnlab check`: a deliberately wrong AlexNet gives every deviation, a faithful one none (exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _reliability import assert_one_line_error, run_cli

from cnnlab.check import check, load_target
from cnnlab.check.record import record, stages
from cnnlab.errors import CnnlabError

FIXTURES = Path(__file__).parent / "fixtures"
WRONG = f"{FIXTURES / 'alexnet_wrong.py'}:AlexNet"
FAITHFUL = f"{FIXTURES / 'alexnet_faithful.py'}:AlexNet"


@pytest.fixture(scope="module")
def wrong_report() -> dict[tuple[str, str], dict[str, str]]:
    report = check(load_target(WRONG), "alexnet", (3, 224, 224))
    return {(d.layer.split(" = ")[0], d.aspect): d.as_dict() for d in report.deviations}


def test_wrong_conv1_padding_and_its_54x54_maps(wrong_report: dict[tuple[str, str], dict[str, str]]) -> None:
    pad = wrong_report["conv1", "padding"]
    assert (pad["reference"], pad["theirs"]) == ("2", "0")
    size = wrong_report["conv1", "output size"]
    assert (size["reference"], size["theirs"]) == ("96x55x55", "96x54x54")
    assert "floor((224 + 2*0 - 11)/4) + 1 = 54" in size["why"]
    assert "floor((224 + 2*2 - 11)/4) + 1 = 55" in size["why"]
    later = wrong_report["conv2", "output size"]
    assert later["theirs"] == "256x26x26" and "follows from" in later["why"]


def test_wrong_lrn_size_and_alpha_in_the_papers_convention(
    wrong_report: dict[tuple[str, str], dict[str, str]],
) -> None:
    for layer in ("conv1", "conv2"):
        n = wrong_report[layer, "LRN size n"]
        assert (n["reference"], n["theirs"], n["section"]) == ("5", "96", "Sec. 3.3")
        alpha = wrong_report[layer, "LRN alpha (paper's)"]
        assert alpha["reference"].startswith("0.0001 (nn.LocalResponseNorm alpha=0.0005 with n=5)")
        assert alpha["theirs"].startswith("1.04e-06") and "alpha=0.0001 / n=96" in alpha["theirs"]
        assert "divides alpha by n" in alpha["why"]


def test_wrong_pooling_and_dropout(wrong_report: dict[tuple[str, str], dict[str, str]]) -> None:
    pool = wrong_report["conv5", "pooling"]
    assert pool["reference"] == "max 3x3/2 (overlapping)" and pool["theirs"] == "max 2x2/2"
    for layer in ("fc6", "fc7"):
        kind = wrong_report[layer, "dropout kind"]
        assert (kind["reference"], kind["theirs"], kind["section"]) == ("Dropout", "Dropout2d", "Sec. 4.2")
        assert (wrong_report[layer, "dropout rate"]["theirs"]) == "0.3"


def test_wrong_net_through_the_cli_exits_1_with_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", WRONG, "--input-size", "224"], capsys)
    assert code == 1
    assert "15 deviations" in out and "Dropout2d" in out and "why it matters" in out
    code, out, _ = run_cli(["check", WRONG, "--input-size", "224", "--json"], capsys)
    doc = json.loads(out)
    assert code == 1 and len(doc["deviations"]) == 15
    assert doc["parameters"]["reference"] == doc["parameters"]["theirs"] == 62_378_344


def test_faithful_net_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", FAITHFUL], capsys)
    assert code == 0, out
    assert "no deviation" in out


def test_init_against_the_papers_n_0_001_and_bias_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", FAITHFUL, "--init", "--kwargs", "paper_init=True", "--json"], capsys)
    assert code == 0, out
    code, out, _ = run_cli(["check", FAITHFUL, "--init", "--json"], capsys)  # PyTorch's default init
    found = {(d["layer"].split(" = ")[0], d["aspect"]) for d in json.loads(out)["deviations"]}
    assert code == 1
    assert {("conv2", "init bias"), ("fc6", "init bias"), ("conv1", "init weight std")} <= found
    assert ("conv1", "init bias") not in found  # bias 0 there, as PyTorch's init nearly is


def test_module_targets_and_other_references(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "torchvision.models:alexnet", "--against", "alexnet_torchvision"]
    assert run_cli(argv, capsys)[0] == 0
    argv = ["check", "cnnlab.models.lenet:lenet5", "--against", "lenet5", "--kwargs", "num_classes=10",
            "in_channels=1"]  # fmt: skip
    assert run_cli(argv, capsys)[0] == 0
    code, out, _ = run_cli([*argv, "partial=False", "--json"], capsys)
    doc = json.loads(out)
    assert code == 1
    assert {(d["aspect"], d["section"]) for d in doc["deviations"]} == {
        ("input slices", "Sec. II.B"),
        ("parameters", "Sec. II.B"),
    }


def test_torchvision_layout_against_the_paper(capsys: pytest.CaptureFixture[str]) -> None:
    report = check(load_target("torchvision.models:alexnet"), "alexnet")
    found = {(d.layer.split(" = ")[0], d.aspect): d for d in report.deviations}
    assert found["conv1", "conv width"].theirs == "64"
    assert found["conv1", "LRN"].theirs == "none"
    assert found["conv5", "dropout"].reference == "none"  # torchvision drops fc6's input, not fc7's output
    assert found["fc7", "dropout"].theirs == "none"
    assert found["total", "parameters"].theirs.startswith("61,100,840 (-1,277,504")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "missing.py:AlexNet"], "no such Python file"),
        (["check", "net.pt"], "never from weight, pickle or TorchScript"),
        (["check", "alexnet"], "is not a network"),
        (["check", WRONG, "--against", "resnet50"], "unknown model 'resnet50'"),
        (["check", f"{FIXTURES / 'alexnet_wrong.py'}:Nope"], "has no 'Nope': it defines AlexNet"),
        (["check", WRONG, "--kwargs", "nonsense"], "write key=value"),
        (["check", WRONG, "--kwargs", "width=3"], "building AlexNet(width=3) failed: TypeError"),
        (["check", WRONG, "--input-size", "3x20x20"], "forward pass on a 3x20x20 input failed"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert message in line, line


def test_a_weight_file_is_never_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "model.pt"
    evil.write_bytes(b"not read")
    with pytest.raises(CnnlabError, match="Python source"):
        load_target(f"{evil}:AlexNet")  # the suffix of the spec, as given
    line = assert_one_line_error(*run_cli(["check", str(evil)], capsys)[::2])
    assert "model.pt" in line


def test_shared_activation_modules_and_stages() -> None:
    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(2, 2, 3)
            self.relu = torch.nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.b(self.relu(self.a(x))))

    ops, out = record(Shared(), (1, 8, 8))
    assert [o.kind for o in ops] == ["conv", "act", "conv", "act"] and out.shape == (1, 2, 4, 4)
    _, found = stages(ops)
    assert [len(s.after) for s in found] == [1, 1]
