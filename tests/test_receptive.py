"""Receptive field and jump of every layer in `cnnlab summary` , against hand-computed values.

r_out = r_in + (k_eff - 1) * j_in, j_out = j_in * stride, k_eff = d(k - 1) + 1, r = j = 1 at the input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.cli import main
from cnnlab.receptive import adaptive_window
from cnnlab.summary import LayerRow, build, layer_table


def fields(rows: list[LayerRow]) -> dict[str, tuple[int, int]]:
    return {r.name: (r.field[0], r.jump[0]) for r in rows if r.field is not None and r.jump is not None}


def test_alexnet_at_227_as_spec_section_9_gives_it() -> None:
    got = fields(layer_table(build("alexnet"), (3, 227, 227)))
    # conv1 11 (j 4); pool1 11 + 2*4 = 19 (j 8); conv2 19 + 4*8 = 51; pool2 51 + 2*8 = 67 (j 16);
    # conv3 67 + 2*16 = 99; conv4 131; conv5 163; pool5 163 + 2*16 = 195 (j 32).
    want = {"conv1": (11, 4), "pool1": (19, 8), "conv2": (51, 8), "pool2": (67, 16), "conv3": (99, 16),
            "conv4": (131, 16), "conv5": (163, 16), "pool5": (195, 32)}  # fmt: skip
    assert {k: got[f"features.{k}"] for k in want} == want
    assert got["features.relu5"] == (163, 16)  # an activation sees what its input sees
    assert "classifier.fc6" not in got  # a fully connected unit has no spatial field of its own


def test_vgg16_conv5_3_sees_196_and_pool5_212() -> None:
    rows = layer_table(build("vgg16"), (3, 224, 224))
    got = fields(rows)
    # Each 3x3 conv adds 2 jumps, each 2x2/2 pool 1 jump and doubles it: block 1 ends at 5 -> pool 6 (j 2),
    # block 2 6 + 2*2*2 = 14 -> 16 (j 4), block 3 16 + 3*2*4 = 40 -> 44 (j 8), block 4 44 + 3*2*8 = 92 ->
    # 100 (j 16), block 5 100 + 3*2*16 = 196 -> pool5 212 (j 32).
    assert got["features.28"] == (196, 16) and got["features.30"] == (212, 32)
    assert got["features.2"] == (5, 1) and got["features.4"] == (6, 2) and got["features.16"] == (44, 8)


def test_lenet5_by_hand() -> None:
    got = fields(layer_table(build("lenet5", in_channels=1), (1, 32, 32)))
    # C1 5x5: 1 + 4*1 = 5 (j 1); S2 2x2/2: 5 + 1*1 = 6 (j 2); C3 5x5: 6 + 4*2 = 14 (j 2);
    # S4 2x2/2: 14 + 1*2 = 16 (j 4); C5 5x5: 16 + 4*4 = 32 (j 4): C5 sees the whole 32x32 image.
    assert [got[f"features.{k}"] for k in ("c1", "s2", "c3", "s4", "c5")] == [
        (5, 1), (6, 2), (14, 2), (16, 4), (32, 4),
    ]  # fmt: skip


def test_an_inception_block_gives_its_widest_branch_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    rows = layer_table(build("googlenet"), (3, 224, 224))
    block = next(r for r in rows if r.name == "inception3a")
    # maxpool2 sees 27 px at jump 8. Branches: 1x1 keeps 27; 1x1 -> 3x3: 27 + 2*8 = 43;
    # 1x1 -> 5x5: 27 + 4*8 = 59; 3x3/1 pool -> 1x1: 43. The block: the widest, 59; the narrowest 27.
    assert block.field == (59, 59) and block.field_smallest == (27, 27) and block.jump == (8, 8)
    assert main(["summary", "googlenet"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("inception3a "))
    assert "27..59" in line and "the block's field is the widest" in out


class _Functional(nn.Module):
    """A dilated conv, a functional max pool and an adaptive pool whose windows differ in size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, dilation=2, padding=2)
        self.head = nn.AdaptiveAvgPool2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv(x), 2)  # no module: seen through the functional call
        return self.head(x)


def test_dilation_functional_pools_and_adaptive_windows() -> None:
    rows = layer_table(_Functional(), (1, 16, 16))
    got = fields(rows)
    assert got["conv"] == (5, 1)  # k_eff = 2*(3 - 1) + 1 = 5; padding changes nothing
    # F.max_pool2d 2/2: 5 + 1*1 = 6 (j 2); adaptive 8 -> 3: windows [0,3) [2,6) [5,8): largest 4, steps 2
    # and 3, so 6 + (4 - 1)*2 = 12 and j = 2*3 = 6.
    assert adaptive_window(8, 3) == (4, 3)
    assert got["head"] == (12, 6)


def test_summary_json_and_a_users_own_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "alexnet", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    layers = {r["name"]: r for r in doc["layers"]}
    assert layers["features.conv5"]["field"] == [163, 163] and layers["features.pool5"]["jump"] == [32, 32]
    net = tmp_path / "mine.py"
    net.write_text(
        "from torch import nn\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(3, 4, 7, stride=2), nn.MaxPool2d(3, 2), nn.Conv2d(4, 4, 3))\n"
    )
    assert main(["summary", f"{net}:Net", "--input-size", "3x64x64"]) == 0
    out = capsys.readouterr().out
    # conv 7/2: 7 (j 2); pool 3/2: 7 + 2*2 = 11 (j 4); conv 3: 11 + 2*4 = 19 (j 4).
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln[:1] in "012"}
    assert [lines[k][7:9] for k in "012"] == [["7", "2"], ["11", "4"], ["19", "4"]]
