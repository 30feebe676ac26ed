"""torchvision's AlexNet (64-192-384-256-256, no LRN, adaptive pool, dropout before fc6 and fc7).

This is the single-tower net of Krizhevsky's 2014 "One weird trick" paper, which torchvision ships; the
key names (features.N, classifier.N) are torchvision's so its state dicts load with strict=True.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from cnnlab.models import layers as L
from cnnlab.models.alexnet import SWITCHES, AlexNetSwitches
from cnnlab.models.registry import register

TORCHVISION_NOTE = "Krizhevsky 2014, One weird trick for parallelizing CNNs (torchvision's layout)"
# torchvision's net has no LRN and keeps PyTorch's own initialisation.
TORCHVISION_SWITCHES = replace(SWITCHES, lrn=False, init="default")


class TorchvisionAlexNet(L.Net):
    """torchvision's AlexNet (64-192-384-256-256, no LRN, dropout before fc6 and fc7), key for key.

    Switches that add layers (LRN, batch norm) go into the activation's slot (`features.1` becomes
    Sequential(bn, relu, norm)), so the conv and linear keys stay torchvision's.
    """

    family = "alexnet"
    default_input_size = 224

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        switches: AlexNetSwitches,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        sw = switches.checked()

        def after(channels: int, norm: bool) -> nn.Module:
            parts: list[nn.Module] = [nn.BatchNorm2d(channels)] if sw.batch_norm else []
            parts.append(L.activation(sw.activation))
            if norm and sw.lrn and not sw.batch_norm:
                parts.append(L.LocalResponseNorm(channels))
            return parts[0] if len(parts) == 1 else nn.Sequential(*parts)

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),  # conv1
            after(64, norm=True),
            L.max_pool(sw.overlap_pool),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # conv2
            after(192, norm=True),
            L.max_pool(sw.overlap_pool),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # conv3
            after(384, norm=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # conv4
            after(256, norm=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # conv5
            after(256, norm=False),
            L.max_pool(sw.overlap_pool),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=sw.dropout),
            nn.Linear(256 * 6 * 6, 4096),  # fc6
            L.activation(sw.activation),
            nn.Dropout(p=sw.dropout),
            nn.Linear(4096, 4096),  # fc7
            L.activation(sw.activation),
            nn.Linear(4096, num_classes),  # fc8
        )
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        bias_one = [convs[1], convs[3], convs[4], self.classifier[1], self.classifier[4]]
        L.init_weights(
            self, sw.init, activation_name=sw.activation, bias_one=bias_one, finals=[self.classifier[6]]
        )

    _NAMES = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")

    def spatial_layers(self) -> list[tuple[str, nn.Module]]:
        found = L.modules_named(self.features, L.SIZE_CHANGING)
        return [(f"{paper} (features.{key})", m) for paper, (key, m) in zip(self._NAMES, found, strict=True)]

    def first_conv(self) -> list[nn.Conv2d]:
        return L.convs(self.features[0])


@register(
    family="alexnet",
    input_size=224,
    paper=TORCHVISION_NOTE,
    description="torchvision's layout, state-dict compatible with torchvision.models.alexnet",
)
def alexnet_torchvision(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: AlexNetSwitches = TORCHVISION_SWITCHES,
) -> TorchvisionAlexNet:
    return TorchvisionAlexNet(num_classes=num_classes, in_channels=in_channels, switches=switches)
