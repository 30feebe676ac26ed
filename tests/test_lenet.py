"""LeNet-5 as published (LeCun et al. 1998, Sec. II.B): per-layer parameter counts, Table I, switches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import CnnlabError, models
from cnnlab.models.lenet import C3_TABLE, PartialConv2d, ScaledTanh
from cnnlab.summary import layer_table, totals

# Sec. II.B, layer by layer, for 32x32 grey digits and 10 classes (linear output: 84 * 10 + 10).
PAPER_COUNTS = {
    "features.c1": 156,
    "features.s2": 12,
    "features.c3": 1_516,
    "features.s4": 32,
    "features.c5": 48_120,
    "classifier.f6": 10_164,
    "classifier.output": 850,
}
FAITHFUL_TOTAL = 60_850  # 60,000 with the paper's RBF output, whose parameters are fixed


def own_params(model: nn.Module) -> dict[str, int]:
    counts = {n: sum(p.numel() for p in m.parameters(recurse=False)) for n, m in model.named_modules()}
    return {n: c for n, c in counts.items() if c}


def test_every_layer_has_the_papers_parameter_count() -> None:
    model = models.create("lenet5", num_classes=10, in_channels=1)
    assert own_params(model) == PAPER_COUNTS
    assert sum(p.numel() for p in model.parameters()) == FAITHFUL_TOTAL == sum(PAPER_COUNTS.values())


def test_rbf_output_has_no_trainable_parameters_so_the_total_is_60000() -> None:
    model = models.create("lenet5", num_classes=10, in_channels=1, output="rbf")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 60_000
    codes = model.classifier.output.codes
    assert codes.shape == (10, 84) and set(codes.unique().tolist()) == {-1.0, 1.0}
    x = torch.randn(3, 84)
    expected = -((x[:, None, :] - codes[None]) ** 2).sum(-1) / 84
    torch.testing.assert_close(model.classifier.output(x), expected)


def test_c3_reads_the_maps_of_table_1() -> None:
    assert [len(t) for t in C3_TABLE] == [3] * 6 + [4] * 9 + [6]
    assert sum(len(t) for t in C3_TABLE) == 60
    assert C3_TABLE[4] == (4, 5, 0) and C3_TABLE[12] == (0, 1, 3, 4) and C3_TABLE[14] == (0, 2, 3, 5)
    conv = PartialConv2d(C3_TABLE, 6, 5)
    dense = conv.dense_weight()
    for o, inputs in enumerate(C3_TABLE):
        read = {i for i in range(6) if dense[o, i].abs().sum() > 0}
        assert read == set(inputs), o
    # Changing an unconnected input map leaves the output map unchanged; a connected one changes it.
    x = torch.randn(1, 6, 14, 14)
    y = x.clone()
    y[:, 3] += 1.0
    changed = (conv(x) - conv(y)).abs().flatten(2).amax(-1)[0] > 0
    assert changed.tolist() == [3 in t for t in C3_TABLE]
    torch.testing.assert_close(conv(x), F.conv2d(x, dense, conv.bias))


def test_layer_sizes_at_32_and_at_28_with_padding() -> None:
    for size in (32, 28):
        model = models.create("lenet5", 10, 1, input_size=size)
        shapes = {r.name: r.output_shape for r in layer_table(model, (1, size, size))}
        assert shapes["features.c1"] == (6, 28, 28)
        assert shapes["features.s2"] == (6, 14, 14)
        assert shapes["features.c3"] == (16, 10, 10)
        assert shapes["features.s4"] == (16, 5, 5)
        assert shapes["features.c5"] == (120, 1, 1)
        assert shapes["classifier.f6"] == (84,)


def test_partial_c3_flops_count_only_the_connected_slices() -> None:
    def c3_flops(**switches: object) -> int:
        rows = layer_table(models.create("lenet5", 10, 1, **switches), (1, 32, 32))
        return next(r.flops for r in rows if r.name == "features.c3")

    assert c3_flops() == 2 * 60 * 25 * 10 * 10
    assert c3_flops(partial=False) == 2 * 96 * 25 * 10 * 10


def test_switches() -> None:
    full = models.create("lenet5", 10, 1, partial=False, pool="max", activation="relu")
    counts = own_params(full)
    assert counts["features.c3"] == 16 * (6 * 25 + 1)
    assert "features.s2" not in counts  # a max pool has nothing to learn
    assert isinstance(full.features.s2, nn.MaxPool2d) and isinstance(full.features.act1, nn.ReLU)
    assert "act2" not in dict(full.features.named_children())  # only the trainable units squash
    assert full(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    rgb = models.create("lenet5", 100, 3, pool="avg", init="kaiming")
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(CnnlabError, match="pool='sum' is not valid"):
        models.create("lenet5", pool="sum")
    with pytest.raises(CnnlabError, match="input_size=30"):
        models.create("lenet5", input_size=30)


def test_scaled_tanh_maps_one_to_one() -> None:
    out = ScaledTanh()(torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([-1.0, 0.0, 1.0]), atol=2e-4, rtol=0)


def test_paper_init_is_uniform_within_2_4_over_fan_in() -> None:
    model = models.create("lenet5", 10, 1)
    assert model.features.c1.weight.abs().max() <= 2.4 / 25
    assert model.features.c5.weight.abs().max() <= 2.4 / 400
    c3 = model.features.c3
    assert c3.weight[c3.slices(15)].abs().max() <= 2.4 / 150 < c3.weight[c3.slices(0)].abs().max()


def test_a_step_of_training_moves_every_parameter() -> None:
    torch.manual_seed(0)
    model = models.create("lenet5", 10, 1)
    loss = F.cross_entropy(model(torch.randn(8, 1, 32, 32)), torch.arange(8))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_table_total_and_default_input() -> None:
    info = models.info("lenet5")
    assert (info.input_size, info.in_channels, info.family) == (32, 1, "lenet")
    assert totals(layer_table(models.create("lenet5", 10, 1), (1, 32, 32))).params == FAITHFUL_TOTAL


def test_summary_builds_lenet5_with_its_own_one_channel_input() -> None:
    """summary.build defaulted to 3 input channels while models.create (and the catalogue) use LeNet-5's 1."""
    from cnnlab import summary

    net = summary.build("lenet5", num_classes=10)
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1
