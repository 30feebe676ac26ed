"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and the variants people actually train.

One table-driven class, `AlexNet`, builds the paper's net, its two-tower grouped form, the half-width net
and the small-image net (`alexnet_torchvision.py` and `alexnet_parallel.py` hold the other two variants).
Layer names follow the paper and Caffe: conv1, relu1, norm1, pool1 ... fc6, relu6, drop6, fc7, ..., fc8.

Input size: the paper's text says 224x224, but an 11x11 stride-4 conv only gives the paper's 55x55 maps
from 227x227 (no padding) or from 224x224 with 2 px of padding: (224 + 4 - 11) // 4 + 1 = 55. We default
to 227 and offer `input_size=224` (conv1 padding 2); both give the same layer sizes from conv1 on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import layers as L
from cnnlab.models.registry import register

PAPER = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep CNNs, NIPS 2012"


@dataclass(frozen=True)
class AlexNetSwitches:
    """The switches every AlexNet builder takes, one `models.create` keyword each.

    The defaults are the paper's choices, with Kaiming init (see docs/models.md); a builder's own defaults
    are `replace(SWITCHES, ...)`.
    """

    activation: str = "relu"  # Sec. 3.1: ReLU
    lrn: bool = True  # Sec. 3.3
    overlap_pool: bool = True  # Sec. 3.4: 3x3 stride-2 pools
    dropout: float = 0.5  # Sec. 4.2
    init: str = "kaiming"
    batch_norm: bool = False

    def checked(self) -> AlexNetSwitches:
        """The same switches with dropout as a float; a bad value raises CnnlabError (init: at init time)."""
        L.activation(self.activation), L.flag("lrn", self.lrn), L.flag("batch_norm", self.batch_norm)
        return replace(self, dropout=L.rate("dropout", self.dropout))


SWITCHES = AlexNetSwitches()


@dataclass(frozen=True)
class ConvSpec:
    """One row of the layer table: a conv with its optional LRN and max-pool (conv -> act -> norm -> pool)."""

    out: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1  # 2 = each tower reads only its own maps (Sec. 3.2)
    norm: bool = False  # Sec. 3.3: LRN after conv1 and conv2
    pool: bool = False  # Sec. 3.4: max-pool after norm1, norm2 and conv5
    bias_one: bool = False  # Sec. 5: bias 1 under init="paper" (conv2, conv4, conv5)
    pool_first: bool = False  # pool, then normalise: cuda-convnet's order, 4x fewer LRN pixels


def paper_table(widths: Sequence[int], groups: int = 1, conv1_padding: int = 0) -> tuple[ConvSpec, ...]:
    """The paper's five conv layers (Sec. 3.5, Figure 2) with the given widths."""
    c1, c2, c3, c4, c5 = widths
    return (
        ConvSpec(c1, 11, stride=4, padding=conv1_padding, norm=True, pool=True),  # conv1
        ConvSpec(c2, 5, padding=2, groups=groups, norm=True, pool=True, bias_one=True),  # conv2
        ConvSpec(c3, 3, padding=1),  # conv3: the one conv that reads both towers
        ConvSpec(c4, 3, padding=1, groups=groups, bias_one=True),  # conv4
        ConvSpec(c5, 3, padding=1, groups=groups, pool=True, bias_one=True),  # conv5
    )


def conv1_padding_for(input_size: object) -> int:
    """227 -> no padding (Caffe); 224 -> padding 2 (the paper's stated size): both give 55x55 after conv1."""
    if input_size == 227:
        return 0
    if input_size == 224:
        return 2
    raise CnnlabError(
        f"input_size={input_size!r} is not valid: use 227 (no conv1 padding) or 224 (padding 2)"
    )


def conv_layers(
    table: Sequence[ConvSpec],
    in_channels: int,
    switches: AlexNetSwitches,
    *,
    bias_one: list[nn.Module],
    first: int = 1,
    pool_padding: int = 0,
    lrn_groups: int = 1,
    pool_early: bool = False,
) -> OrderedDict[str, nn.Module]:
    """The named layers for rows of the table, numbered from `first`; appends bias-1 convs to `bias_one`.

    pool_early: each pool straight after its conv (conv -> pool -> norm -> act): max-pooling commutes with
    the ReLU, so only the norm sees other statistics, and the norm and ReLU run on a quarter of the pixels.
    """
    feats: OrderedDict[str, nn.Module] = OrderedDict()
    channels = in_channels
    activation, lrn, batch_norm = switches.activation, switches.lrn, switches.batch_norm
    for i, spec in enumerate(table, start=first):
        conv = nn.Conv2d(
            channels,
            spec.out,
            spec.kernel,
            spec.stride,
            spec.padding,
            groups=spec.groups,
            bias=not batch_norm,
        )
        feats[f"conv{i}"] = conv
        if spec.bias_one:
            bias_one.append(conv)
        if pool_early and spec.pool:
            feats[f"pool{i}"] = L.max_pool(switches.overlap_pool, pool_padding)
        if batch_norm:  # BN replaces LRN when on (Ioffe & Szegedy 2015 dropped LRN the same way)
            feats[f"bn{i}"] = nn.BatchNorm2d(spec.out)
        feats[f"{activation}{i}"] = L.activation(activation)
        stages: list[tuple[str, nn.Module]] = []
        if spec.norm and lrn and not batch_norm:
            # Sec. 3.3's constants; each tower normalises its own maps.
            stages.append((f"norm{i}", L.LocalResponseNorm.of(spec.out, L.ALEXNET_LRN, groups=lrn_groups)))
        if spec.pool and not pool_early:
            stages.append((f"pool{i}", L.max_pool(switches.overlap_pool, pool_padding)))
        feats.update(reversed(stages) if spec.pool_first else stages)
        channels = spec.out
    return feats


def fc_layers(
    first: int, cin: int, cout: int, activation: str, dropout: float
) -> OrderedDict[str, nn.Module]:
    """fcN -> act -> dropout (Sec. 4.2: dropout on the outputs of the first two fc layers)."""
    return OrderedDict(
        [
            (f"fc{first}", nn.Linear(cin, cout)),
            (f"{activation}{first}", L.activation(activation)),
            (f"drop{first}", nn.Dropout(dropout)),
        ]
    )


class AlexNet(L.Net):
    """conv layers from a table of `ConvSpec`s, adaptive pool to `pool_out`, fc-act-dropout x2, classifier."""

    family = "alexnet"

    def __init__(
        self,
        table: Sequence[ConvSpec],
        fc: int,
        *,
        num_classes: int,
        in_channels: int,
        switches: AlexNetSwitches,
        towers: int = 1,
        pool_out: int = 6,
        pool_padding: int = 0,
        input_size: int = 227,
        pool_early: bool = False,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        switches = switches.checked()
        activation, dropout = switches.activation, switches.dropout
        self.default_input_size = input_size
        self.towers = towers
        bias_one: list[nn.Module] = []
        feats = conv_layers(
            table, in_channels, switches, bias_one=bias_one, pool_padding=pool_padding, lrn_groups=towers,
            pool_early=pool_early,
        )  # fmt: skip
        channels = table[-1].out
        self.features = nn.Sequential(feats)
        # At the paper's input size pool5 is already 6x6 and this is the identity; it lets other sizes run.
        self.avgpool = nn.AdaptiveAvgPool2d(pool_out)
        n = len(table)
        hidden = [f"fc{n + 1}", f"fc{n + 2}"]
        self.classifier = nn.Sequential(
            fc_layers(n + 1, channels * pool_out * pool_out, fc, activation, dropout)
            | fc_layers(n + 2, fc, fc, activation, dropout)
            | OrderedDict([(f"fc{n + 3}", nn.Linear(fc, num_classes))])
        )
        bias_one += [self.classifier.get_submodule(name) for name in hidden]
        final = self.classifier[-1]
        L.init_weights(self, switches.init, activation_name=activation, bias_one=bias_one, finals=[final])

    def first_conv(self) -> list[nn.Conv2d]:
        [conv1] = L.convs(self.features.get_submodule("conv1"))
        if self.towers == 1:
            return [conv1]
        # The grouped net's conv1 holds both towers' filters: show them as two convs, like Figure 3.
        return [_conv_slice(conv1, part, self.towers) for part in range(self.towers)]

    def extra_repr(self) -> str:
        return f"towers={self.towers}" if self.towers > 1 else ""


def _conv_slice(conv: nn.Conv2d, part: int, towers: int) -> nn.Conv2d:
    """A conv whose weights are a view of one tower's share of `conv`'s filters (for display)."""
    n = conv.out_channels // towers
    rows = slice(part * n, (part + 1) * n)
    piece = nn.Conv2d(conv.in_channels, n, conv.kernel_size, conv.stride, conv.padding, device="meta")  # type: ignore[arg-type]
    piece.weight = nn.Parameter(conv.weight.detach()[rows], requires_grad=False)
    piece.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach()[rows], requires_grad=False)
    return piece


WIDTHS = (96, 256, 384, 384, 256)  # Sec. 3.5: conv1-conv5, both towers together
HALF_WIDTHS = (48, 128, 192, 192, 128)  # one tower's share (Figure 2)


def paper_net(
    widths: Sequence[int],
    fc: int,
    towers: int,
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: AlexNetSwitches = SWITCHES,
    input_size: int = 227,
) -> AlexNet:
    """A net of the paper's geometry (Sec. 3.5): five convs of `widths` in `towers`, two fc layers of `fc`."""
    table = paper_table(widths, groups=towers, conv1_padding=conv1_padding_for(input_size))
    return AlexNet(
        table,
        fc,
        num_classes=num_classes,
        in_channels=in_channels,
        switches=switches,
        towers=towers,
        input_size=input_size,
    )


@register(family="alexnet", input_size=227, paper=PAPER, description="paper's net, every conv reads all maps")
def alexnet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: AlexNetSwitches = SWITCHES,
    input_size: int = 227,
) -> AlexNet:
    return paper_net(WIDTHS, 4096, 1, num_classes, in_channels, switches=switches, input_size=input_size)


@register(family="alexnet", input_size=227, paper=PAPER, description="two towers as published: groups=2")
def alexnet_grouped(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: AlexNetSwitches = SWITCHES,
    input_size: int = 227,
) -> AlexNet:
    return paper_net(WIDTHS, 4096, 2, num_classes, in_channels, switches=switches, input_size=input_size)


@register(family="alexnet", input_size=224, paper=PAPER, description="one tower: 48-128-192-192-128, fc 2048")
def alexnet_half(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: AlexNetSwitches = SWITCHES,
    input_size: int = 224,
) -> AlexNet:
    return paper_net(HALF_WIDTHS, 2048, 1, num_classes, in_channels, switches=switches, input_size=input_size)


def small_table(width: float) -> tuple[ConvSpec, ...]:
    """cuda-convnet's CIFAR-10 net (layers-18pct: three 5x5 convs of 32-32-64 maps), AlexNet-style.

    3x3/2 overlapping pools padded by 1 take 28 -> 14 -> 7 -> 4 and 32 -> 16 -> 8 -> 4. LRN follows the
    pool, as in layers-18pct's first layer: normalising 4x fewer pixels keeps it cheap on a CPU.
    """
    w = L.positive("width", width)
    return (
        ConvSpec(L.scaled(w, 32), 5, padding=2, norm=True, pool=True, pool_first=True),  # conv1
        ConvSpec(
            L.scaled(w, 32), 5, padding=2, norm=True, pool=True, pool_first=True, bias_one=True
        ),  # conv2
        ConvSpec(L.scaled(w, 64), 5, padding=2, pool=True, bias_one=True),  # conv3
    )


@register(
    family="alexnet",
    input_size=28,
    paper=PAPER + "; cuda-convnet layers-18pct",
    description="small-image AlexNet for 28-32 px (Fashion-MNIST, CIFAR-10)",
)
def alexnet_small(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: AlexNetSwitches = SWITCHES,
    width: float = 1.0,
    pool_early: bool = False,
) -> AlexNet:
    """pool_early: conv -> pool -> norm -> ReLU in every layer (the fast recipe's, see `conv_layers`)."""
    return AlexNet(
        small_table(width),
        L.scaled(L.positive("width", width), 256),
        num_classes=num_classes,
        in_channels=in_channels,
        switches=switches,
        pool_out=4,
        pool_padding=1,  # 28 -> 14 -> 7 -> 4 and 32 -> 16 -> 8 -> 4: the same 4x4 map for both data sets
        input_size=28,
        pool_early=L.flag("pool_early", pool_early),
    )


def fast_table(width: float) -> tuple[ConvSpec, ...]:
    """The fast recipe's small-image net: three 3x3 convs of 32-64-128 maps, each one pooled (3x3/2, padded
    by 1: 28 -> 14 -> 7 -> 4). Fewer maps early and more late than layers-18pct's 32-32-64 5x5 convs, for
    about the same multiply-adds: +0.7% validation accuracy after 3 epochs (docs/training.md)."""
    w = L.positive("width", width)
    return (
        ConvSpec(L.scaled(w, 32), 3, padding=1, norm=True, pool=True, pool_first=True),  # conv1
        ConvSpec(L.scaled(w, 64), 3, padding=1, norm=True, pool=True, pool_first=True, bias_one=True),
        ConvSpec(L.scaled(w, 128), 3, padding=1, pool=True, bias_one=True),  # conv3
    )


FAST_SWITCHES = replace(SWITCHES, batch_norm=True, dropout=0.0)


@register(
    family="alexnet",
    input_size=28,
    paper=PAPER + "; batch norm (Ioffe & Szegedy 2015)",
    description="the fast recipe's small-image AlexNet: 3x3 convs 32-64-128, pool -> BN -> ReLU",
)
def alexnet_fast(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    switches: AlexNetSwitches = FAST_SWITCHES,
    width: float = 1.0,
    pool_early: bool = True,
) -> AlexNet:
    """conv -> pool -> BN -> ReLU x3, fc 256 -> 256 -> classes: batch norm on by default, no dropout."""
    return AlexNet(
        fast_table(width),
        L.scaled(L.positive("width", width), 256),
        num_classes=num_classes,
        in_channels=in_channels,
        switches=switches,
        pool_out=4,
        pool_padding=1,
        input_size=28,
        pool_early=L.flag("pool_early", pool_early),
    )
