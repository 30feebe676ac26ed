"""`figure1_net`: the four-layer CIFAR-10 net of the AlexNet paper's Figure 1 (section 3.1).

The paper says only "a four-layer convolutional neural network" trained on CIFAR-10 without regularisation.
We read it as cuda-convnet's example net `layers-80sec` (about 26% test error in 80 s), which has four
weight layers:

    conv1  32 filters 5x5, pad 2   -> pool1 max 3x3 stride 2     32 -> 16 px
    conv2  32 filters 5x5, pad 2   -> pool2 3x3 stride 2         16 -> 8
    conv3  64 filters 5x5, pad 2   -> pool3 3x3 stride 2          8 -> 4
    fc10   the classes

cuda-convnet's pools count their outputs by rounding up (start 0, 3x3 windows every 2 px): 32 -> 16 -> 8 -> 4,
i.e. `ceil_mode=True`; 28 px inputs give 28 -> 14 -> 7 -> 3. layers-80sec averages in pool2 and pool3 (max in
pool1): `pool="convnet"`, the default; `pool="max"` makes all three max pools.

No regularisation by default, as in Figure 1: no dropout, no LRN (layers-18pct adds LRN after pool1 and
pool2, which `lrn=true` does with the paper's constants). The `activation` switch is what Figure 1 varies.
Parameters: 89,578 for 3x32x32 inputs and 10 classes; 83,498 for 1x28x28 (the fc layer reads 3x3 maps).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import layers as L
from cnnlab.models.registry import register

PAPER = "Krizhevsky, Sutskever & Hinton, NIPS 2012, Figure 1; the net read as cuda-convnet's layers-80sec"
POOLS = ("convnet", "max")
INITS = ("kaiming", "paper", "default")
WIDTHS = (32, 32, 64)


def _final_side(input_size: int) -> int:
    """The side of pool3's maps: three 3x3 stride-2 pools that round up (28 -> 3, 32 -> 4)."""
    side = input_size
    for _ in range(3):
        side = -(-(side - 3) // 2) + 1
    return side


class Figure1Net(L.Net):
    """conv-pool x3 (5x5 convs, 3x3 stride-2 pools) then one fully connected layer."""

    family = "figure1"

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        activation: str,
        pool: str,
        overlap_pool: bool,
        lrn: bool,
        dropout: float,
        init: str,
        input_size: int,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        L.activation(activation), L.choice("pool", pool, POOLS), L.choice("init", init, INITS)
        L.flag("overlap_pool", overlap_pool), L.flag("lrn", lrn)
        rate = L.rate("dropout", dropout)
        if input_size not in (28, 32):
            raise CnnlabError(
                f"input_size={input_size!r} is not valid: use 32 (CIFAR-10, the paper's) or 28 "
                "(Fashion-MNIST)"
            )
        self.default_input_size = input_size
        self.final_side = _final_side(input_size)

        def pooling(i: int) -> nn.Module:
            if not overlap_pool:  # Sec. 3.4's traditional z = s = 2: the same sizes (32 -> 16 -> 8 -> 4)
                return nn.MaxPool2d(2, 2)
            if pool == "convnet" and i > 1:
                return nn.AvgPool2d(3, 2, ceil_mode=True)
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        layers: list[tuple[str, nn.Module]] = []
        channels = in_channels
        for i, width in enumerate(WIDTHS, start=1):
            layers += [
                (f"conv{i}", nn.Conv2d(channels, width, 5, padding=2)),
                (f"act{i}", L.activation(activation)),
                (f"pool{i}", pooling(i)),
            ]
            if lrn and i < 3:  # layers-18pct's place for response normalisation: after pool1 and pool2
                layers.append((f"norm{i}", L.LocalResponseNorm.of(width, L.ALEXNET_LRN)))
            channels = width
        self.features = nn.Sequential(OrderedDict(layers))
        # The designed sizes skip it; other inputs (the zoo's tests run 64 px) average down to the fc's maps.
        self.avgpool = nn.AdaptiveAvgPool2d(self.final_side)
        features = channels * self.final_side**2
        head: list[tuple[str, nn.Module]] = [("drop", nn.Dropout(rate))] if rate > 0 else []
        fc = nn.Linear(features, num_classes)
        self.classifier = nn.Sequential(OrderedDict([*head, ("fc10", fc)]))
        self._init(init, activation, fc)

    def _init(self, scheme: str, activation: str, fc: nn.Linear) -> None:
        if scheme == "paper":
            # The AlexNet paper's N(0, 0.01) for every layer, biases 0 (cuda-convnet's layer-params-80sec
            # uses 0.01 too, and 1e-4 for conv1 on unnormalised pixels).
            L.init_weights(self, "paper", allowed=INITS)
        else:
            L.init_weights(self, scheme, activation_name=activation, finals=[fc], allowed=INITS)

    def first_conv(self) -> list[nn.Conv2d]:
        return L.convs(self.features.get_submodule("conv1"))


@register(
    family="figure1",
    input_size=32,
    paper=PAPER,
    description="Figure 1's four-layer CIFAR-10 net (cuda-convnet layers-80sec), no regularisation",
)
def figure1_net(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    activation: str = "relu",
    pool: str = "convnet",
    overlap_pool: bool = True,
    lrn: bool = False,
    dropout: float = 0.0,
    init: str = "kaiming",
    input_size: int = 32,
) -> Figure1Net:
    return Figure1Net(
        num_classes=num_classes,
        in_channels=in_channels,
        activation=activation,
        pool=pool,
        overlap_pool=overlap_pool,
        lrn=lrn,
        dropout=dropout,
        init=init,
        input_size=input_size,
    )
