"""`figure1_net`: the AlexNet paper's Figure 1 net read as cuda-convnet's layers-80sec."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import CnnlabError, models


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("in_channels", "input_size", "expected"),
    [
        # conv1 3*25*32+32, conv2 32*25*32+32, conv3 32*25*64+64, fc 64*4*4*10+10
        (3, 32, 2_432 + 25_632 + 51_264 + 10_250),
        # grey 28 px: conv1 25*32+32, fc reads 3x3 maps: 64*9*10+10
        (1, 28, 832 + 25_632 + 51_264 + 5_770),
    ],
)
def test_parameter_count(in_channels: int, input_size: int, expected: int) -> None:
    net = models.create("figure1_net", 10, in_channels, input_size=input_size)
    assert n_params(net) == expected
    assert expected in (89_578, 83_498)


@pytest.mark.parametrize(("input_size", "sides"), [(32, [32, 16, 16, 8, 8, 4]), (28, [28, 14, 14, 7, 7, 3])])
def test_layers_80sec_geometry(input_size: int, sides: list[int]) -> None:
    """conv 5x5 pad 2 keeps the side; each 3x3 stride-2 pool rounds up, as cuda-convnet's do."""
    net = models.create("figure1_net", 10, 3, input_size=input_size)
    seen: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
        for m in net.features
        if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d)
    ]
    net(torch.randn(1, 3, input_size, input_size))
    for h in hooks:
        h.remove()
    assert seen == sides
    kinds = [type(m).__name__ for m in net.features if "Pool" in type(m).__name__]
    assert kinds == ["MaxPool2d", "AvgPool2d", "AvgPool2d"]  # layers-80sec: max, then average
    allmax = models.create("figure1_net", 10, 3, pool="max")
    assert all(isinstance(m, nn.MaxPool2d) for m in allmax.features if "Pool" in type(m).__name__)


def test_no_regularisation_by_default_and_the_switches() -> None:
    net = models.create("figure1_net", 10, 3)
    kinds = {type(m).__name__ for m in net.modules()}
    assert "Dropout" not in kinds and "LocalResponseNorm" not in kinds
    assert "ReLU" in kinds
    tanh = models.create("figure1_net", 10, 3, activation="tanh", lrn=True, dropout=0.5)
    kinds = {type(m).__name__ for m in tanh.modules()}
    assert {"Tanh", "LocalResponseNorm", "Dropout"} <= kinds and "ReLU" not in kinds
    # Same seed, same weights for either activation's shapes: arms of relu-vs-tanh are paired.
    torch.manual_seed(0)
    a = models.create("figure1_net", 10, 3, init="paper")
    torch.manual_seed(0)
    b = models.create("figure1_net", 10, 3, init="paper", activation="tanh")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert float(a.features.conv2.weight.detach().std()) == pytest.approx(0.01, rel=0.05)
    nonoverlap = models.create("figure1_net", 10, 1, overlap_pool=False, input_size=28)
    assert nonoverlap(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert n_params(nonoverlap) == 83_498  # the same sizes, so the same fc layer


def test_bad_switches_are_user_errors() -> None:
    with pytest.raises(CnnlabError, match="input_size"):
        models.create("figure1_net", 10, 3, input_size=64)
    with pytest.raises(CnnlabError, match="pool"):
        models.create("figure1_net", 10, 3, pool="avg")
    with pytest.raises(CnnlabError, match="too small"):
        models.create("figure1_net", 10, 3)(torch.randn(1, 3, 1, 1))
