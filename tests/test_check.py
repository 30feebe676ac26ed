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


def _faithful() -> torch.nn.Module:
    return load_target(FAITHFUL)


def test_padding_same_and_valid_are_the_numbers_they_mean() -> None:
    """An equivalent net written with padding="same"/"valid" matches (they were compared as -1: four false
    deviations, exit 1); `summary` reads them through the same function and works the formula out."""
    from cnnlab.summary import layer_table

    net = _faithful()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.padding = "valid" if m.padding == (0, 0) else "same"  # type: ignore[assignment]
    assert sum(m.padding == "same" for m in net.modules() if isinstance(m, torch.nn.Conv2d)) == 4
    assert check(net, "alexnet").deviations == []
    rows = {r.name: r for r in layer_table(net, (3, 227, 227))}
    assert rows["features.0"].formula == "floor((227 + 2*0 - 11)/4) + 1 = 55"
    assert rows["features.4"].formula == "floor((27 + 2*2 - 5)/1) + 1 = 27"


def test_every_pool_lrn_and_dropout_of_a_stage_is_compared() -> None:
    """A second LRN (alpha=1), a second max pool and an extra Dropout(0.9) in a stage are each a row (only
    the first of each kind was compared: exit 0)."""
    net = _faithful()
    f = list(net.features)
    f.insert(3, torch.nn.LocalResponseNorm(5, alpha=1.0, beta=0.75, k=2.0))  # after conv1's LRN
    f.insert(9, torch.nn.MaxPool2d(1, 1))  # after conv2's pool
    net.features = torch.nn.Sequential(*f)
    c = list(net.classifier)
    c.insert(3, torch.nn.Dropout(0.9))  # after fc6's dropout
    net.classifier = torch.nn.Sequential(*c)
    found = {(d.layer.split(" = ")[0], d.aspect): d for d in check(net, "alexnet").deviations}
    assert found[("conv1", "LRN 2")].theirs == "LRN n=5 alpha=0.2 beta=0.75 k=2"
    assert found[("conv2", "pooling 2")].theirs == "max pool 1x1/1"
    assert found[("fc6", "dropout 2")].theirs == "Dropout(p=0.9)"
    assert len(found) == 3


def test_an_adaptive_pool_that_changes_the_size_is_listed() -> None:
    """torchvision's layout at 256 px: its adaptive pool takes conv5's 7x7 maps to 6x6; the reference's
    does nothing there (6x6 already). It was not listed."""
    from cnnlab import models

    report = check(models.create("alexnet_torchvision"), "alexnet", (3, 256, 256))
    rows = [d for d in report.deviations if "adaptive" in d.theirs]
    assert len(rows) == 1 and rows[0].layer.startswith("conv5") and "(6, 6)" in rows[0].theirs


class Functional(torch.nn.Module):
    """The paper's AlexNet with a functional forward (F.relu, F.local_response_norm, F.max_pool2d,
    F.dropout, torch.flatten); `pool5` and `fc6_in` make it wrong on purpose, and it ends in a softmax."""

    def __init__(self, pool5: int = 3, fc6_in: int = 9216) -> None:
        super().__init__()
        nn = torch.nn
        self.pool5 = pool5
        self.conv1, self.conv2 = nn.Conv2d(3, 96, 11, 4), nn.Conv2d(96, 256, 5, padding=2)
        self.conv3, self.conv4 = nn.Conv2d(256, 384, 3, padding=1), nn.Conv2d(384, 384, 3, padding=1)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1)
        self.fc6, self.fc7, self.fc8 = nn.Linear(fc6_in, 4096), nn.Linear(4096, 4096), nn.Linear(4096, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        def lrn(t: torch.Tensor) -> torch.Tensor:
            return F.local_response_norm(t, 5, alpha=5e-4, beta=0.75, k=2.0)

        x = F.max_pool2d(lrn(F.relu(self.conv1(x))), 3, 2)
        x = F.max_pool2d(lrn(F.relu(self.conv2(x))), 3, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = torch.flatten(F.max_pool2d(F.relu(self.conv5(x)), self.pool5, 2), 1)
        x = F.dropout(F.relu(self.fc6(x)), 0.5, self.training)
        x = F.dropout(F.relu(self.fc7(x)), 0.5, self.training)
        return F.softmax(self.fc8(x), dim=1)


def test_a_functional_forward_is_read_like_modules_and_its_real_bugs_named() -> None:
    """F.relu, F.max_pool2d, ... are recorded: no false "none" rows (there were 10). What is wrong is named:
    fc6 reads 6,400 inputs where the paper's reads 9,216 (it was hidden behind the earlier size row), and
    the final softmax (a softmax twice under cross-entropy)."""
    found = {(d.layer.split(" = ")[0], d.aspect): d for d in check(Functional(5, 6400), "alexnet").deviations}
    assert ("fc6", "fc inputs") in found
    assert (found[("fc6", "fc inputs")].reference, found[("fc6", "fc inputs")].theirs) == ("9,216", "6,400")
    assert found[("(output)", "softmax")].theirs == "F.softmax"
    assert not [d for d in found.values() if d.theirs == "none"], found
    assert set(found) == {("conv5", "stage output"), ("conv5", "pooling"), ("fc6", "fc inputs"),
                          ("(output)", "softmax"), ("total", "parameters")}  # fmt: skip


def test_a_final_softmax_module_is_warned_about_and_an_fc_that_cannot_read_its_maps_is_named() -> None:
    net = _faithful()
    net.classifier.append(torch.nn.Softmax(dim=1))
    rows = [d for d in check(net, "alexnet").deviations]
    assert [(d.aspect, d.theirs) for d in rows] == [("softmax", "Softmax")]
    wants = r"fully connected layer 1 \(fc6\) takes 6,400 inputs but gets 9,216 \(256x6x6 maps flattened"
    with pytest.raises(CnnlabError, match=wants):
        check(Functional(3, 6400), "alexnet")
