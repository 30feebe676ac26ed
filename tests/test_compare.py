"""`compare`: FLOPs and memory against independent counts, speed measured, table/JSON/chart written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.cli import main
from cnnlab.compare import compare, count, format_rows, saved_bytes
from cnnlab.summary import build, layer_table

B, H = 3, 8  # batch and input side of the hand-counted net


def hand_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 4x8x8
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),  # 8x4x4
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


def test_counts_against_a_hand_count() -> None:
    c = count(hand_net(), (1, H, H), B)
    conv1, conv2 = 4 * H * H, 8 * 4 * 4  # output elements per image
    # A multiply-add counts 2; ReLU 1 per element; Flatten nothing.
    flops = 2 * (1 * 9) * conv1 + conv1 + 2 * (4 * 9) * conv2 + conv2 + 2 * 128 * 10
    assert c.flops == flops
    assert c.params == (9 * 4 + 4) + (36 * 8 + 8) + (128 * 10 + 10)
    # Layer outputs that take memory: conv1 (the in-place ReLU reuses it), conv2, relu2, linear.
    assert c.output_bytes == 4 * B * (conv1 + conv2 + conv2 + 10)
    # Kept for backward: the input (conv1's weight gradient), conv1's output (the in-place ReLU's result,
    # also conv2's input), relu2's result (also the linear layer's input, through the Flatten view).
    assert c.saved_bytes == 4 * B * (1 * H * H + conv1 + conv2)


def test_meta_count_equals_a_real_forward() -> None:
    real = build("alexnet_small", num_classes=10, in_channels=1, meta=False)
    meta = build("alexnet_small", num_classes=10, in_channels=1)
    assert saved_bytes(meta, (1, 28, 28), 2) == saved_bytes(real, (1, 28, 28), 2) > 0


def test_flops_agree_with_torch_flop_counter() -> None:
    # FlopCounterMode counts conv and matmul only, 2 per multiply-add, as we do; the rest is ours alone.
    model = build("alexnet_torchvision")
    rows = layer_table(model, (3, 224, 224))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224, device="meta"))
    assert sum(r.flops for r in rows if r.type in ("Conv2d", "Linear")) == counter.get_total_flops()
    assert count(model, (3, 224, 224), 1).flops > counter.get_total_flops()  # plus pooling and ReLUs


def test_compare_measures_speed_and_writes_ratios() -> None:
    rows = compare(["alexnet_small", "alexnet_small"], (1, 28, 28), 2, 10, "cpu", warmup=0, steps=1)
    assert all(r.forward_ips and r.train_ips and r.train_ips > 0 for r in rows)
    assert rows[0].flops == rows[1].flops and rows[0].device == "cpu"
    text = format_rows(rows)
    assert "alexnet_small vs alexnet_small: 1x params, 1x FLOPs" in text


def test_compare_command_json_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "alexnet_small", "alexnet_half", "--batch-size", "4", "--no-timing"]
    assert main([*args, "--json", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in doc] == ["alexnet_small", "alexnet_half"]
    half = build("alexnet_half")
    assert doc[1]["params"] == sum(p.numel() for p in half.parameters())
    assert doc[1]["saved_bytes"] == saved_bytes(half, (3, 224, 224), 4)
    assert doc[1]["forward_ips"] is None
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "compare.json").read_text()) == doc
    assert "alexnet_half vs alexnet_small" in (tmp_path / "compare.txt").read_text()


def test_compare_says_where_it_wrote_after_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "lenet5", "alexnet_small", "--no-timing", "--out", str(tmp_path / "c")]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-1] == f"wrote {tmp_path / 'c' / 'compare.txt'}, compare.json and compare.png"
    assert any(line.startswith("lenet5 ") for line in lines[:-1])  # the table came first


def test_compare_rejects_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:  # refused by argparse, as any bad flag value
        main(["compare", "alexnet_small", "--batch-size", "0", "--no-timing"])
    assert exit_info.value.code == 2
    assert main(["compare", "no_such_net", "--no-timing"]) == 2
    assert "unknown model" in capsys.readouterr().err
