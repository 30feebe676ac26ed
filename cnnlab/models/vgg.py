"""VGG (Simonyan & Zisserman, ICLR 2015), configurations A, B, D, E, with and without batch norm.

Key-for-key torchvision's `vgg11` ... `vgg19_bn`, so their state dicts load with strict=True. The paper's
Table 1, one list per column: numbers are 3x3 conv widths (stride 1, padding 1), "M" a 2x2 stride-2 max pool.
"""

from __future__ import annotations

from torch import Tensor, flatten, nn

from cnnlab.models import layers as L
from cnnlab.models.registry import register

PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"

CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}
# VGG Sec. 3.1 draws weights with "zero mean and 10^-2 variance", i.e. std 0.1 (many ports read std 0.01).
PAPER_STD = 0.1
INITS = ("paper", "kaiming", "default")


class VGG(L.Net):
    family = "vgg"
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

    def spatial_layers(self) -> list[tuple[str, nn.Module]]:
        found = L.modules_named(self.features, L.SIZE_CHANGING)
        return [
            (f"{name} (features.{key})", m) for name, (key, m) in zip(self._paper_names, found, strict=True)
        ]

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier[-1](self.embed(x))

    def embed(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = self.features(x)
        if x.shape[-1] != 7 or x.shape[-2] != 7:  # 224 px already gives 7x7
            x = self.avgpool(x)
        return self.classifier[:-1](flatten(x, 1))

    def first_conv(self) -> list[nn.Conv2d]:
        return L.convs(self.features[0])


def _builder(config: str, depth: int, batch_norm: bool) -> None:
    """Register vgg{depth}[_bn] for one column of Table 1."""

    def build(
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        activation: str = "relu",
        lrn: bool = False,
        dropout: float = 0.5,
        init: str = "kaiming",
    ) -> VGG:
        return VGG(
            config,
            num_classes=num_classes,
            in_channels=in_channels,
            batch_norm=batch_norm,
            activation=activation,
            lrn=lrn,
            dropout=dropout,
            init=init,
        )

    bn = " with batch norm" if batch_norm else ""
    register(
        family="vgg",
        input_size=224,
        paper=PAPER + (" (+ Ioffe & Szegedy 2015 batch norm)" if batch_norm else ""),
        description=f"configuration {config}: {depth} weight layers{bn}",
        name=f"vgg{depth}{'_bn' if batch_norm else ''}",
    )(build)


for _bn in (False, True):
    for _config, _depth in (("A", 11), ("B", 13), ("D", 16), ("E", 19)):
        _builder(_config, _depth, _bn)
