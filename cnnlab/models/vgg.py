"""VGG (Simonyan & Zisserman, ICLR 2015), configurations A, B, D, E, with and without batch norm.

Key-for-key torchvision's `vgg11` ... `vgg19_bn`, so their state dicts load with strict=True. The paper's
Table 1, one list per column: numbers are 3x3 conv widths (stride 1, padding 1), "M" a 2x2 stride-2 max pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.models import layers as L
from cnnlab.models.registry import register

PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"

# fmt: off
CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # VGG-11
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # VGG-13
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # VGG-16
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],  # noqa: E501 (VGG-19: one line, as Table 1 reads)
}
# fmt: on
# VGG Sec. 3.1 draws weights with "zero mean and 10^-2 variance", i.e. std 0.1 (many ports read std 0.01).
PAPER_STD = 0.1
INITS = ("paper", "kaiming", "default")


class _VGGNet(L.Net):
    """What both VGGs share: `features` whose size-changing layers carry the paper's names (conv1_1 ...
    pool5, Table 1), in `_paper_names`."""

    family = "vgg"
    _paper_names: list[str]

    def spatial_layers(self) -> list[tuple[str, nn.Module]]:
        found = L.modules_named(self.features, L.SIZE_CHANGING)
        return [
            (f"{name} (features.{key})", m) for name, (key, m) in zip(self._paper_names, found, strict=True)
        ]

    def first_conv(self) -> list[nn.Conv2d]:
        return L.convs(self.features[0])


class VGG(_VGGNet):
    default_input_size = 224

    def __init__(
        self,
        config: str,
        *,
        num_classes: int,
        in_channels: int,
        batch_norm: bool,
        activation: str,
        lrn: bool,
        dropout: float,
        init: str,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        L.activation(activation), L.flag("lrn", lrn), L.choice("init", init, INITS)
        dropout = L.rate("dropout", dropout)
        modules: list[nn.Module] = []
        # Paper names for the error messages and the layer table: conv3_2 is block 3's second conv.
        self._paper_names: list[str] = []
        channels, block, index = in_channels, 1, 1
        for width in CONFIGS[config]:
            if width == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
                self._paper_names.append(f"pool{block}")
                block, index = block + 1, 1
                continue
            assert isinstance(width, int)
            modules.append(nn.Conv2d(channels, width, kernel_size=3, padding=1))
            self._paper_names.append(f"conv{block}_{index}")
            if batch_norm:
                modules.append(nn.BatchNorm2d(width))
            act = L.activation(activation)
            if lrn and self._paper_names[-1] == "conv1_1":
                # Table 1's A-LRN: LRN (AlexNet's constants) after the first layer. Sec. 4.1: no gain.
                act = nn.Sequential(act, L.LocalResponseNorm(width))
            modules.append(act)
            channels, index = width, index + 1
        self.features = nn.Sequential(*modules)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),  # fc6
            L.activation(activation),
            nn.Dropout(p=dropout),  # Sec. 3.1: dropout 0.5 after the first two fc layers
            nn.Linear(4096, 4096),  # fc7
            L.activation(activation),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),  # fc8
        )
        final = self.classifier[6]
        L.init_weights(
            self, init, activation_name=activation, finals=[final], allowed=INITS, paper_std=PAPER_STD
        )


@dataclass(frozen=True)
class VGGSwitches:
    activation: str = "relu"  # Sec. 2.1: "All hidden layers are equipped with the rectification"
    lrn: bool = False  # Sec. 2.1: LRN (in configuration A-LRN only) "does not improve the performance"
    dropout: float = 0.5  # Sec. 3.1: dropout ratio 0.5 for the first two fully connected layers
    init: str = "kaiming"


SWITCHES = VGGSwitches()
BN = " (+ Ioffe & Szegedy 2015 batch norm)"


def _vgg(config: str, num_classes: int, in_channels: int, switches: VGGSwitches, batch_norm: bool) -> VGG:
    return VGG(
        config, num_classes=num_classes, in_channels=in_channels, batch_norm=batch_norm,
        activation=switches.activation, lrn=switches.lrn, dropout=switches.dropout, init=switches.init,
    )  # fmt: skip


@register(family="vgg", input_size=224, paper=PAPER, description="configuration A: 11 weight layers")
def vgg11(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("A", num_classes, in_channels, switches, batch_norm=False)


@register(family="vgg", input_size=224, paper=PAPER, description="configuration B: 13 weight layers")
def vgg13(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("B", num_classes, in_channels, switches, batch_norm=False)


@register(family="vgg", input_size=224, paper=PAPER, description="configuration D: 16 weight layers")
def vgg16(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("D", num_classes, in_channels, switches, batch_norm=False)


@register(family="vgg", input_size=224, paper=PAPER, description="configuration E: 19 weight layers")
def vgg19(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("E", num_classes, in_channels, switches, batch_norm=False)


@register(family="vgg", input_size=224, paper=PAPER + BN, description="configuration A with batch norm")
def vgg11_bn(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("A", num_classes, in_channels, switches, batch_norm=True)


@register(family="vgg", input_size=224, paper=PAPER + BN, description="configuration B with batch norm")
def vgg13_bn(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("B", num_classes, in_channels, switches, batch_norm=True)


@register(family="vgg", input_size=224, paper=PAPER + BN, description="configuration D with batch norm")
def vgg16_bn(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("D", num_classes, in_channels, switches, batch_norm=True)


@register(family="vgg", input_size=224, paper=PAPER + BN, description="configuration E with batch norm")
def vgg19_bn(num_classes: int = 1000, in_channels: int = 3, *, switches: VGGSwitches = SWITCHES) -> VGG:
    return _vgg("E", num_classes, in_channels, switches, batch_norm=True)


# -- Small-image VGG (28-32 px) -----------------------------------------------------------------------------

SMALL_POOLS = 3  # 2x2 pools after the first three blocks only: 32 -> 16 -> 8 -> 4, 28 -> 14 -> 7 -> 3
SMALL_WIDTH = 0.25  # Table 1's widths x 1/4: 16-32-64-128-128
SMALL_HIDDEN = 256  # fc layers (the paper's 4096, scaled down as the convs are)


class VGGSmall(_VGGNet):
    """A configuration of Table 1 for 28-32 px images, at the same width scaling for every configuration.

    The five blocks keep Table 1's depths (A: 1-1-2-2-2 convs, B: 2-2-2-2-2, D: 2-2-3-3-3, E: 2-2-4-4-4) and
    3x3 convs (stride 1, padding 1); their widths are scaled by `width` (1/4: 16-32-64-128-128). Five 2x2
    pools would take a 28 px image below 1 px, so only the first three blocks end in one (28 -> 3, 32 -> 4)
    and blocks 4 and 5 run at that size; a global average pool then feeds fc-fc-classes (256 units,
    dropout 0.5), the paper's 4096 scaled down. `lrn` puts A-LRN's LRN after the first conv (Table 1).
    """

    default_input_size = 28

    def __init__(
        self,
        config: str,
        *,
        num_classes: int,
        in_channels: int,
        width: float,
        switches: VGGSwitches,
        batch_norm: bool,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        config = L.choice("config", config, CONFIGS)
        w = L.positive("width", width)
        L.flag("lrn", switches.lrn), L.flag("batch_norm", batch_norm)
        dropout = L.rate("dropout", switches.dropout)
        L.choice("init", switches.init, INITS)
        modules: list[nn.Module] = []
        self._paper_names: list[str] = []
        channels, block, index, pools = in_channels, 1, 1, 0
        for item in CONFIGS[config]:
            if item == "M":
                if pools < SMALL_POOLS:
                    modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    self._paper_names.append(f"pool{block}")
                    pools += 1
                block, index = block + 1, 1
                continue
            assert isinstance(item, int)
            out = L.scaled(w, item)
            modules.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
            self._paper_names.append(f"conv{block}_{index}")
            if batch_norm:
                modules.append(nn.BatchNorm2d(out))
            act = L.activation(switches.activation)
            if switches.lrn and self._paper_names[-1] == "conv1_1":
                act = nn.Sequential(act, L.LocalResponseNorm(out))  # A-LRN (Table 1)
            modules.append(act)
            channels, index = out, index + 1
        self.features = nn.Sequential(*modules)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = L.scaled(w / SMALL_WIDTH, SMALL_HIDDEN)
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden),
            L.activation(switches.activation),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            L.activation(switches.activation),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        L.init_weights(
            self,
            switches.init,
            activation_name=switches.activation,
            finals=[self.classifier[6]],
            allowed=INITS,
            paper_std=PAPER_STD,
        )


@register(
    family="vgg",
    input_size=28,
    paper=PAPER + " (scaled for 28-32 px images)",
    description="small-image VGG: Table 1's depths (config A, B, D, E), widths x1/4, 3 pools",
)
def vgg_small(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: VGGSwitches = SWITCHES,
    config: str = "D",
    width: float = SMALL_WIDTH,
    batch_norm: bool = False,
) -> VGGSmall:
    return VGGSmall(
        config, num_classes=num_classes, in_channels=in_channels, width=width, switches=switches,
        batch_norm=batch_norm,
    )  # fmt: skip
