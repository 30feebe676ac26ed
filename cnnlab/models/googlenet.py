"""GoogLeNet / Inception v1 (Szegedy et al., CVPR 2015): the paper's net and torchvision's variant.

`googlenet` is the paper's Table 1: a stem with LRN, nine Inception modules 3a-5b with 5x5 branches, ReLU
convs without batch norm, and the two auxiliary classifiers of Sec. 5. `googlenet_torchvision` is
torchvision's `GoogLeNet` key for key (batch-norm convs, 3x3 where the paper has 5x5, a 2x2 pool4, no LRN).
Both share one Inception module; attribute names are torchvision's (inception3a.branch1 ...), which maps
onto the paper's columns: branch1 = #1x1, branch2 = #3x3 reduce -> #3x3, branch3 = #5x5 reduce -> #5x5,
branch4 = 3x3 max pool -> pool proj.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.errors import CnnlabError
from cnnlab.models import layers as L
from cnnlab.models.registry import AuxOutputs, register

PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"
INITS = ("kaiming", "default")

# Sec. 5: "during training, their loss gets added to the total loss of the network with a discount weight
# (the losses of the auxiliary classifiers were weighted by 0.3)".
AUX_LOSS_WEIGHT = 0.3
# The paper gives no LRN constants; Caffe's bvlc_googlenet uses local_size 5, alpha 1e-4 divided by n
# (Caffe's convention, so 2e-5 in the paper's), beta 0.75 and k 1.
GOOGLENET_LRN = L.LRNParams(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per module.
MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

ConvBlock = Callable[..., nn.Module]


@dataclass(frozen=True)
class GoogLeNetSwitches:
    """The switches both GoogLeNets take (`lrn` is the paper net's own, `transform_input` torchvision's)."""

    activation: str = "relu"  # Sec. 5: "All the convolutions ... use rectified linear activation"
    aux_logits: bool = True  # Sec. 5: two auxiliary classifiers, used in training only
    dropout: float = 0.4  # Table 1: dropout (40%) before the last linear layer
    init: str = "kaiming"


PAPER_SWITCHES = GoogLeNetSwitches()
TORCHVISION_SWITCHES = replace(PAPER_SWITCHES, dropout=0.2)  # torchvision's GoogLeNet drops 20%


class ConvAct(nn.Module):
    """The paper's conv: bias and activation, no batch norm ("All the convolutions ... use ReLU")."""

    def __init__(self, cin: int, cout: int, activation: str, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, **kwargs)
        self.act = L.activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


class BasicConv2d(nn.Module):
    """torchvision's conv: no bias, batch norm (eps 1e-3), activation; keys conv.* and bn.*."""

    def __init__(self, cin: int, cout: int, activation: str, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.act = L.activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels (Sec. 4, Figure 2b); every branch keeps the size."""

    def __init__(self, cin: int, widths: tuple[int, ...], conv: ConvBlock, kernel5: int) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, proj = widths
        self.branch1 = conv(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(conv(cin, c3r, kernel_size=1), conv(c3r, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(
            conv(cin, c5r, kernel_size=1), conv(c5r, c5, kernel_size=kernel5, padding=kernel5 // 2)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True), conv(cin, proj, kernel_size=1)
        )
        self.out_channels = c1 + c3 + c5 + proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Sec. 5's auxiliary classifier: avg pool to 4x4, 1x1 conv 128, fc 1024, dropout 0.7, fc classes.

    The paper pools 5x5 stride 3 (14x14 -> 4x4 at 224 px); torchvision pools adaptively to 4x4. With
    `paper_pool` we pool 5x5/3 where the map allows it, then adaptively to 4x4 (a no-op at 224 px), so the
    head also runs on small inputs.
    """

    def __init__(
        self,
        cin: int,
        num_classes: int,
        conv: ConvBlock,
        activation: str,
        paper_pool: bool,
        width: int = 128,
        hidden: int = 1024,
    ) -> None:
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = conv(cin, width, kernel_size=1)
        self.fc1 = nn.Linear(width * 4 * 4, hidden)  # the 4x4 map of `width` channels
        self.act = L.activation(activation)
        self.dropout = nn.Dropout(p=0.7)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.paper_pool and min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)
        if tuple(x.shape[-2:]) != (4, 4):
            x = F.adaptive_avg_pool2d(x, (4, 4))
        x = torch.flatten(self.conv(x), 1)
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class _InceptionNet(L.Net):
    """What both GoogLeNets share: a trunk returning (features, auxiliary logits), the classifier `fc` and
    the stem's first conv `conv1`. The auxiliary logits come only in training mode (section 5)."""

    family = "googlenet"
    fc: nn.Linear
    conv1: nn.Module

    def _trunk(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor | AuxOutputs:
        features, aux = self._trunk(x)
        logits = self.fc(features)
        return AuxOutputs(logits, aux) if aux else logits

    def embed(self, x: Tensor) -> Tensor:
        return self._trunk(x)[0]

    def first_conv(self) -> list[nn.Conv2d]:
        return L.convs(self.conv1.get_submodule("conv"))


class GoogLeNet(_InceptionNet):
    default_input_size = 224

    def __init__(
        self,
        *,
        paper: bool,
        num_classes: int,
        in_channels: int,
        switches: GoogLeNetSwitches,
        lrn: bool = False,
        transform_input: bool = False,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        activation, aux_logits = switches.activation, switches.aux_logits
        L.activation(activation), L.flag("lrn", lrn), L.flag("aux_logits", aux_logits)
        L.flag("transform_input", transform_input)
        dropout = L.rate("dropout", switches.dropout)
        if transform_input and in_channels != 3:
            raise CnnlabError("transform_input=true re-normalises RGB input: use it with in_channels=3")
        self.paper, self.aux_logits, self.transform_input = paper, aux_logits, transform_input
        block = ConvAct if paper else BasicConv2d

        def conv(cin: int, cout: int, **kwargs: int) -> nn.Module:
            return block(cin, cout, activation, **kwargs)

        def lrn_layer(channels: int) -> nn.Module:
            return L.LocalResponseNorm.of(channels, GOOGLENET_LRN)

        use_lrn = paper and lrn
        # Stem (Table 1): conv 7x7/2, max pool 3x3/2, LRN, conv 1x1 + 3x3, LRN, max pool 3x3/2.
        self.conv1 = conv(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # ceil: 112 -> 56 as in Table 1
        self.norm1 = lrn_layer(64) if use_lrn else nn.Identity()
        self.conv2 = conv(64, 64, kernel_size=1)
        self.conv3 = conv(64, 192, kernel_size=3, padding=1)
        self.norm2 = lrn_layer(192) if use_lrn else nn.Identity()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        kernel5 = 5 if paper else 3  # torchvision's known 3x3 in the "5x5" branch, kept for its weights

        def inception(cin: int, key: str) -> Inception:
            return Inception(cin, MODULES[key], conv, kernel5)

        self.inception3a = inception(192, "3a")
        self.inception3b = inception(256, "3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(480, "4a")
        self.inception4b = inception(512, "4b")
        self.inception4c = inception(512, "4c")
        self.inception4d = inception(512, "4d")
        self.inception4e = inception(528, "4e")
        # Table 1 has a 3x3/2 max pool here; torchvision uses 2x2/2 (same 7x7 map at 224 px).
        self.maxpool4 = nn.MaxPool2d(3 if paper else 2, stride=2, ceil_mode=True)
        self.inception5a = inception(832, "5a")
        self.inception5b = inception(832, "5b")
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:  # after 4a and 4d (Sec. 5)
            self.aux1 = InceptionAux(512, num_classes, conv, activation, paper_pool=paper)
            self.aux2 = InceptionAux(528, num_classes, conv, activation, paper_pool=paper)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # the paper's 7x7 average pool at 224 px
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        heads = [self.fc] + [aux.fc2 for aux in (self.aux1, self.aux2) if aux is not None]
        L.init_weights(self, switches.init, activation_name=activation, finals=heads, allowed=INITS)

    def spatial_layers(self) -> list[tuple[str, nn.Module]]:
        return [
            ("conv1", self.conv1.get_submodule("conv")),
            ("pool1 (maxpool1)", self.maxpool1),
            ("conv2", self.conv2.get_submodule("conv")),
            ("conv3", self.conv3.get_submodule("conv")),
            ("pool2 (maxpool2)", self.maxpool2),
            ("pool3 (maxpool3)", self.maxpool3),
            ("pool4 (maxpool4)", self.maxpool4),
        ]

    def _trunk(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The input of the final fc layer, and the auxiliary logits (training mode only)."""
        self.check_input(x)
        if self.transform_input:
            # torchvision: map ImageNet-normalised input to the [-1, 1] scaling its ported weights expect.
            # Constants computed in double as torchvision does, so the outputs match to the last bit.
            scale = x.new_tensor([s / 0.5 for s in (0.229, 0.224, 0.225)]).view(1, 3, 1, 1)
            shift = x.new_tensor([(m - 0.5) / 0.5 for m in (0.485, 0.456, 0.406)]).view(1, 3, 1, 1)
            x = x * scale + shift
        use_aux = self.training and self.aux1 is not None and self.aux2 is not None
        aux: list[Tensor] = []
        # Shapes at 224 px (Table 1).
        x = self.conv1(x)  # 64 x 112 x 112
        x = self.maxpool1(x)  # 64 x 56 x 56
        x = self.norm1(x)
        x = self.conv2(x)  # 64 x 56 x 56
        x = self.conv3(x)  # 192 x 56 x 56
        x = self.norm2(x)
        x = self.maxpool2(x)  # 192 x 28 x 28
        x = self.inception3a(x)  # 256 x 28 x 28
        x = self.inception3b(x)  # 480 x 28 x 28
        x = self.maxpool3(x)  # 480 x 14 x 14
        x = self.inception4a(x)  # 512 x 14 x 14
        if use_aux and self.aux1 is not None:
            aux.append(self.aux1(x))  # classes
        x = self.inception4b(x)  # 512 x 14 x 14
        x = self.inception4c(x)  # 512 x 14 x 14
        x = self.inception4d(x)  # 528 x 14 x 14
        if use_aux and self.aux2 is not None:
            aux.append(self.aux2(x))  # classes
        x = self.inception4e(x)  # 832 x 14 x 14
        x = self.maxpool4(x)  # 832 x 7 x 7
        x = self.inception5a(x)  # 832 x 7 x 7
        x = self.inception5b(x)  # 1024 x 7 x 7
        x = self.avgpool(x)  # 1024 x 1 x 1
        return self.dropout(torch.flatten(x, 1)), tuple(aux)


@register(
    family="googlenet",
    input_size=224,
    paper=PAPER,
    description="Inception v1 as published: 5x5, LRN, aux heads",
)
def googlenet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: GoogLeNetSwitches = PAPER_SWITCHES,
    lrn: bool = True,
) -> GoogLeNet:
    return GoogLeNet(paper=True, num_classes=num_classes, in_channels=in_channels, switches=switches, lrn=lrn)


@register(
    family="googlenet",
    input_size=224,
    paper=PAPER + " (torchvision's variant: batch norm, 3x3 in the 5x5 branch)",
    description="state-dict compatible with torchvision.models.googlenet(aux_logits=True)",
)
def googlenet_torchvision(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: GoogLeNetSwitches = TORCHVISION_SWITCHES,
    transform_input: bool = False,
) -> GoogLeNet:
    return GoogLeNet(
        paper=False,
        num_classes=num_classes,
        in_channels=in_channels,
        switches=switches,
        transform_input=transform_input,
    )


# -- Small-image GoogLeNet (28-32 px) -----------------------------------------------------------------------

SMALL_WIDTH = 0.25  # Table 1's widths x 1/4 (3a: 16, 24->32, 4->8, 8)


class GoogLeNetSmall(_InceptionNet):
    """The paper's nine Inception modules for 28-32 px images, every width scaled by `width`.

    Table 1's stem (7x7/2 conv, two 3x3/2 pools, LRN) takes 224 px to 28 before module 3a, 8x smaller;
    a 28 px image has no room for that, so the stem here is one 3x3 conv (192 x width maps) and a 3x3/2
    max pool (28 -> 14, 32 -> 16). The pools between the module groups are Table 1's 3x3/2, padded by 1:
    3a-3b run at 14 px (16), 4a-4e at 7 (8), 5a-5b at 4, then the global average pool, dropout 0.4 and the
    classifier. The auxiliary classifiers sit after 4a and 4d as in section 5 (average pool to 4x4, 1x1
    conv, fc, dropout 0.7, fc), their widths scaled too, weighted 0.3 in training and dropped at inference.
    The trunk is built and initialised before them, so a net with them and one without start from the
    same trunk weights for the same seed.
    """

    default_input_size = 28

    def __init__(
        self, *, num_classes: int, in_channels: int, width: float, switches: GoogLeNetSwitches
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        activation = switches.activation
        L.activation(activation), L.flag("aux_logits", switches.aux_logits)
        L.choice("init", switches.init, INITS)
        dropout = L.rate("dropout", switches.dropout)
        w = L.positive("width", width)
        self.aux_logits = switches.aux_logits

        def conv(cin: int, cout: int, **kwargs: int) -> nn.Module:
            return ConvAct(cin, cout, activation, **kwargs)

        self.conv1 = conv(in_channels, L.scaled(w, 192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1)
        blocks: dict[str, Inception] = {}
        channels = L.scaled(w, 192)
        for key, widths in MODULES.items():
            blocks[key] = Inception(channels, tuple(L.scaled(w, c) for c in widths), conv, 5)
            channels = blocks[key].out_channels
        self.inception3a, self.inception3b = blocks["3a"], blocks["3b"]
        self.maxpool3 = nn.MaxPool2d(3, stride=2, padding=1)
        self.inception4a, self.inception4b, self.inception4c = blocks["4a"], blocks["4b"], blocks["4c"]
        self.inception4d, self.inception4e = blocks["4d"], blocks["4e"]
        self.maxpool4 = nn.MaxPool2d(3, stride=2, padding=1)
        self.inception5a, self.inception5b = blocks["5a"], blocks["5b"]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        # The trunk is built and initialised before the heads draw any random numbers.
        L.init_weights(self, switches.init, activation_name=activation, finals=[self.fc], allowed=INITS)
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if self.aux_logits:
            aux_width, aux_hidden = L.scaled(w, 128), L.scaled(w, 1024)
            self.aux1 = InceptionAux(
                blocks["4a"].out_channels, num_classes, conv, activation, False, aux_width, aux_hidden
            )
            self.aux2 = InceptionAux(
                blocks["4d"].out_channels, num_classes, conv, activation, False, aux_width, aux_hidden
            )
            for aux in (self.aux1, self.aux2):
                L.init_weights(
                    aux, switches.init, activation_name=activation, finals=[aux.fc2], allowed=INITS
                )

    def spatial_layers(self) -> list[tuple[str, nn.Module]]:
        return [
            ("conv1", self.conv1.get_submodule("conv")),
            ("pool2 (maxpool2)", self.maxpool2),
            ("pool3 (maxpool3)", self.maxpool3),
            ("pool4 (maxpool4)", self.maxpool4),
        ]

    def _trunk(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
        self.check_input(x)
        aux: list[Tensor] = []
        x = self.inception3b(self.inception3a(self.maxpool2(self.conv1(x))))
        x = self.inception4a(self.maxpool3(x))
        if self.training and self.aux1 is not None:
            aux.append(self.aux1(x))
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        if self.training and self.aux2 is not None:
            aux.append(self.aux2(x))
        x = self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))
        return self.dropout(torch.flatten(self.avgpool(x), 1)), tuple(aux)


@register(
    family="googlenet",
    input_size=28,
    paper=PAPER + " (scaled for 28-32 px images)",
    description="small-image GoogLeNet: the nine Inception modules, widths x1/4, 3x3 stem + pool, aux heads",
)
def googlenet_small(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: GoogLeNetSwitches = PAPER_SWITCHES,
    width: float = SMALL_WIDTH,
) -> GoogLeNetSmall:
    return GoogLeNetSmall(num_classes=num_classes, in_channels=in_channels, width=width, switches=switches)
