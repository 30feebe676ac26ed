"""The layer table (shapes, parameters, FLOPs, memory, size formula) and the `models`, `summary` commands."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab import models
from cnnlab.cli import main
from cnnlab.counting import size_formula
from cnnlab.errors import CnnlabError
from cnnlab.summary import build, format_table, layer_table, parse_input_size, totals


def on_meta(fn, *args, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return fn(*args, **kwargs)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 64),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    pad=st.integers(0, 3),
    ceil=st.booleans(),
)
def test_size_formula_matches_pytorch(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> None:
    if pad > kernel // 2 or size + 2 * pad < kernel:
        return  # PyTorch refuses these
    pool = nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)
    expected = pool(torch.zeros(1, 1, size, size, device="meta")).shape[-1]
    text, out, exact = size_formula(size, kernel, stride, pad, ceil_mode=ceil)
    assert out == expected
    assert text.startswith(
        ("ceil" if ceil else "floor") + f"(({size} + 2*{pad} - {kernel})/{stride}) + 1 = {out}"
    )
    assert exact == pytest.approx((size + 2 * pad - kernel) / stride + 1)


def test_size_formula_shows_the_fraction_the_floor_drops() -> None:
    assert size_formula(227, 11, 4, 0)[0] == "floor((227 + 2*0 - 11)/4) + 1 = 55"
    text, out, exact = size_formula(224, 11, 4, 0)
    assert (out, exact) == (54, 54.25) and "54.25" in text


def small_net(inplace: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    )


def test_layer_table_rows_by_hand() -> None:
    rows = layer_table(small_net(), (3, 8, 8), batch_size=2)
    assert [r.name for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r.output_shape for r in rows] == [(4, 8, 8), (4, 8, 8), (4, 4, 4), (64,), (5,)]
    assert [r.params for r in rows] == [3 * 4 * 9 + 4, 0, 0, 0, 64 * 5 + 5]
    conv_flops = 2 * (3 * 9) * (4 * 8 * 8)
    assert [r.flops for r in rows] == [conv_flops, 4 * 8 * 8, 4 * 4 * 4 * 4, 0, 2 * 64 * 5]
    assert [r.shares_input for r in rows] == [False, True, False, True, False]  # in-place ReLU, Flatten view
    assert rows[0].activation_bytes == 2 * 4 * 8 * 8 * 4
    assert rows[0].formula == "floor((8 + 2*1 - 3)/1) + 1 = 8"
    assert rows[2].formula == "floor((8 + 2*0 - 2)/2) + 1 = 4"
    t = totals(rows)
    assert t.params == t.trainable == sum(p.numel() for p in small_net().parameters())
    assert t.activation_bytes == 2 * 4 * (4 * 8 * 8 + 4 * 4 * 4 + 5)  # the ReLU and Flatten reuse memory
    assert t.param_bytes == 4 * t.params
    text = format_table(rows, batch_size=2)
    assert "total params: 437" in text and "floor((8 + 2*1 - 3)/1) + 1 = 8" in text


def test_frozen_parameters_are_not_trainable() -> None:
    net = small_net()
    net[0].requires_grad_(False)
    t = totals(layer_table(net, (3, 8, 8)))
    assert t.params - t.trainable == 3 * 4 * 9 + 4


@pytest.mark.parametrize("name", models.names())
def test_every_model_table_counts_all_parameters(name: str) -> None:
    info = models.info(name)
    model = build(name)  # the model's own input channels (LeNet-5: 1)
    rows = layer_table(model, (info.in_channels, info.input_size, info.input_size))
    assert totals(rows).params == sum(p.numel() for p in model.parameters())
    assert rows[-1].output_shape == (1000,) or not rows[-1].ran


def test_alexnet_at_224_explains_why_227() -> None:
    rows = layer_table(build("alexnet"), (3, 224, 224))
    conv1 = next(r for r in rows if r.type == "Conv2d")
    assert conv1.output_shape[-1] == 54
    assert "54.25" in conv1.formula and conv1.note is not None
    assert "227" in conv1.note and "padding 2" in conv1.note
    rows = layer_table(build("alexnet"), (3, 227, 227))
    conv1 = next(r for r in rows if r.type == "Conv2d")
    assert conv1.output_shape[-1] == 55 and conv1.note is None


def test_summary_command_prints_the_224_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "alexnet", "--input-size", "3x224x224"]) == 0
    out = capsys.readouterr().out
    assert "floor((224 + 2*0 - 11)/4) + 1 = 54  [exact 54.25]" in out
    assert "input 227 gives 55 exactly" in out


def test_too_small_input_is_the_models_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CnnlabError):
        layer_table(build("alexnet"), (3, 20, 20))
    assert main(["summary", "alexnet", "--input-size", "20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and len(err.strip().splitlines()) == 1


def test_googlenet_blocks_get_their_concatenation_row() -> None:
    net = on_meta(torchvision.models.googlenet, init_weights=False, aux_logits=True)
    rows = layer_table(net, (3, 224, 224))
    block = next(r for r in rows if r.name == "inception3a")
    assert block.output_shape == (256, 28, 28) and block.params == 0 and not block.shares_input
    # The branches' last layers, whose channels the concatenation adds up.
    ends = [r for r in rows if r.name.startswith("inception3a.branch") and r.name.endswith("1.bn")]
    assert sum(r.output_shape[0] for r in ends) == 256
    aux = [r for r in rows if r.name.startswith("aux")]
    assert aux and not any(r.ran for r in aux)  # auxiliary heads: counted, not run in eval mode
    assert totals(rows).params == sum(p.numel() for p in net.parameters())


def test_grouped_convolutions_count_per_group() -> None:
    grouped = nn.Conv2d(96, 256, 5, padding=2, groups=2)
    rows = layer_table(nn.Sequential(grouped), (96, 27, 27))
    assert rows[0].params == 256 * 48 * 25 + 256
    assert rows[0].flops == 2 * 48 * 25 * 256 * 27 * 27


def test_flops_match_the_flop_counter_for_vgg() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    net = on_meta(torchvision.models.vgg11)
    rows = layer_table(net, (3, 64, 64))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 64, 64, device="meta"))
    assert sum(r.flops for r in rows if r.type in ("Conv2d", "Linear")) == counter.get_total_flops()


@pytest.mark.parametrize("text", ["3x", "axb", "0x2x2", "1x2x3x4"])
def test_bad_input_size(text: str) -> None:
    with pytest.raises(CnnlabError, match="3x227x227"):
        parse_input_size(text)


def test_input_size_forms() -> None:
    assert parse_input_size("227") == (3, 227, 227)
    assert parse_input_size("1x28x28") == (1, 28, 28)
    assert parse_input_size("32x32") == (3, 32, 32)


def test_models_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in models.names():
        assert name in out
        net = build(name, in_channels=models.info(name).in_channels)
        assert f"{sum(p.numel() for p in net.parameters()):,}" in out
    assert "60,965,224" in out and "62,378,344" in out  # grouped and ungrouped AlexNet


def test_summary_of_a_grey_small_net(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--input-size", "1x28x28", "--num-classes", "10", "--batch-size", "4"]
    assert main(["summary", "alexnet_small", *args]) == 0
    out = capsys.readouterr().out
    assert "act. (B=4)" in out and "total params:" in out
    n = sum(p.numel() for p in build("alexnet_small", num_classes=10, in_channels=1).parameters())
    assert f"total params: {n:,}" in out


class _Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.conv(x), 1)  # a view: no new memory, no row of its own


class _TwoWay(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)  # a new tensor: the block gets a row


def test_blocks_get_a_row_only_for_new_tensors() -> None:
    rows = layer_table(nn.Sequential(_Stem(), nn.Linear(2 * 4 * 4, 3)), (3, 6, 6))
    assert [r.name for r in rows] == ["0.conv", "1"]
    rows = layer_table(nn.Sequential(_TwoWay()), (3, 4, 4), batch_size=2)
    assert [r.name for r in rows] == ["0.a", "0.b", "0"]
    assert rows[-1].output_shape == (7, 4, 4) and rows[-1].activation_bytes == 2 * 7 * 16 * 4


@pytest.mark.parametrize("name", models.names())
def test_every_activation_counts_one_flop_per_element(name: str) -> None:
    """LeNet-5's scaled tanh counted 0 FLOPs; every activation layer (the docs' convention) counts 1 per
    output element, whatever its class."""
    from cnnlab.counting import ACTIVATIONS

    info = models.info(name)
    size = (info.in_channels, info.input_size, info.input_size)
    acts = [r for r in layer_table(build(name, in_channels=info.in_channels), size) if r.type in ACTIVATIONS]
    assert acts, name
    for r in acts:
        assert r.flops == int(torch.tensor(r.output_shape).prod()), (name, r.name, r.type)


def test_summary_of_a_same_padded_conv_works_the_formula_out() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.Conv2d(4, 4, 4, padding="same"),
                        nn.Conv2d(4, 4, 3, padding="valid"))  # fmt: skip
    rows = layer_table(net, (1, 9, 9))
    assert [r.output_shape for r in rows] == [(4, 9, 9), (4, 9, 9), (4, 7, 7)]
    assert rows[0].formula == "floor((9 + 2*1 - 3)/1) + 1 = 9"
    assert rows[1].formula == "floor((9 + 2*1.5 - 4)/1) + 1 = 9"  # an even kernel: 1 + 2 pixels of padding
    assert rows[2].formula == "floor((9 + 2*0 - 3)/1) + 1 = 7"
