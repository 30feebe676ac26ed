"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition, 1998).

The layer table of Sec. II.B, read top to bottom (32x32 grey input):

    C1  6@28x28   5x5 conv                                        156 params
    S2  6@14x14   2x2 average x a trainable coefficient + a bias   12
    C3  16@10x10  5x5 conv reading the S2 maps of Table I        1,516
    S4  16@5x5    as S2                                            32
    C5  120       5x5 conv over S4's 5x5 maps (so 1x1 outputs)  48,120
    F6  84        fully connected                               10,164
    out 10        linear (850), or the paper's RBF units (fixed, no trainable parameters)

Every layer up to F6 is followed by the squashing function f(a) = 1.7159 tanh(2a/3) (Sec. II.B, Appendix A),
so the total is 60,850 trainable parameters with a linear output and 60,000 with the RBF output: the
paper's "about 60,000". The switches turn the 1998 details into their later replacements: `partial=false`
makes C3 read all six S2 maps (2,416 params), `pool=max`/`avg` replaces the trainable subsampling,
`activation=relu` the squashing.

Input: the net is drawn for 32x32 images (MNIST's 28x28 digits centred in a 32x32 field, Sec. III.A).
`input_size=28` pads C1 by 2 pixels instead, which gives the same 28x28 C1 maps from 28x28 images.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import layers as L
from cnnlab.models.registry import register

PAPER = "LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition, 1998"

# Table I: the S2 maps each C3 map reads. Maps 0-5 read 3 contiguous maps, 6-11 read 4 contiguous, 12-14
# read 4 non-contiguous, map 15 reads all 6 (60 input slices in all). "Contiguous" wraps around (4, 5, 0).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    *(tuple((i + j) % 6 for j in range(3)) for i in range(6)),
    *(tuple((i + j) % 6 for j in range(4)) for i in range(6)),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

ACTIVATIONS = ("scaled_tanh", *L.ACTIVATIONS)
POOLS = ("trainable", "avg", "max")
OUTPUTS = ("linear", "rbf")
INITS = ("paper", "kaiming", "default")


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a) with A = 1.7159 and S = 2/3 (Appendix A): f(1) = 1, f(-1) = -1, and the
    second derivative is largest at +-1, so targets of +-1 sit where the function still bends."""

    A = 1.7159
    S = 2.0 / 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A * torch.tanh(self.S * x)


class Subsampling(nn.AvgPool2d):
    """S2/S4: each unit averages a 2x2 window, times a trainable coefficient plus a trainable bias, one pair
    per map (Sec. II.B). The paper adds the four inputs; averaging only rescales the coefficient by 4.

    A subclass of `nn.AvgPool2d`, so the size checks, the layer table and `cnnlab check` read it as a pool.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(kernel_size=2, stride=2)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.weight[:, None, None] + self.bias[:, None, None]


class PartialConv2d(nn.Conv2d):
    """C3: a 5x5 conv where output map o reads only the input maps `table[o]` (Table I).

    Only the connected 5x5 slices are parameters (`weight` is [slices, kH, kW]); the forward scatters them
    into a dense [out, in, kH, kW] kernel whose other slices are zero, so it is one ordinary convolution.
    """

    index: torch.Tensor

    def __init__(self, table: tuple[tuple[int, ...], ...], in_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, len(table), kernel_size)
        self.table = table
        pairs = [(o, i) for o, inputs in enumerate(table) for i in inputs]
        del self.weight
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        # Position of each slice in the flattened [out * in] kernel; rebuilt, never saved.
        index = torch.tensor([o * in_channels + i for o, i in pairs], dtype=torch.long)
        self.register_buffer("index", index, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not hasattr(self, "table"):  # nn.Conv2d.__init__ calls this before the table exists
            return
        for o, inputs in enumerate(self.table):
            bound = 1.0 / math.sqrt(len(inputs) * self.kernel_size[0] * self.kernel_size[1])
            nn.init.uniform_(self.weight[self.slices(o)], -bound, bound)
            if self.bias is not None:
                nn.init.uniform_(self.bias[o : o + 1], -bound, bound)

    def slices(self, out_map: int) -> slice:
        """The rows of `weight` that feed output map `out_map`."""
        start = sum(len(t) for t in self.table[:out_map])
        return slice(start, start + len(self.table[out_map]))

    def dense_weight(self) -> torch.Tensor:
        o, i, (kh, kw) = self.out_channels, self.in_channels, self.kernel_size
        dense = self.weight.new_zeros(o * i, kh, kw).index_copy(0, self.index, self.weight)
        return dense.view(o, i, kh, kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", partial: {self.weight.shape[0]} input slices (Table I)"


class RBFOutput(nn.Module):
    """The paper's output layer (Sec. II.B): y_i = sum_j (x_j - w_ij)^2 with fixed codes w_i of +-1.

    The paper drew its codes as 7x12 bitmaps of the characters; it notes random +-1 codes would do as well,
    which is what this does (seeded, so every build gets the same codes). The logits are -y_i/84 (closest
    code wins; the scale keeps softmax on a sane range), so cross-entropy training works unchanged. The
    codes are a buffer: no trainable parameters, as in the paper.
    """

    codes: torch.Tensor

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1998)
        codes = torch.randint(0, 2, (num_classes, in_features), generator=g, device="cpu").float() * 2 - 1
        self.register_buffer("codes", codes.to(torch.empty(0).device))  # the default device (meta builds)
        self.in_features, self.out_features = in_features, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq = (x * x).sum(1, keepdim=True) - 2 * x @ self.codes.t() + (self.codes * self.codes).sum(1)
        return -sq / self.in_features


class LeNet5(L.Net):
    """C1-S2-C3-S4-C5-F6-output; `features` holds C1 to C5, `classifier` F6 and the output layer."""

    family = "lenet"

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        partial: bool,
        pool: str,
        activation: str,
        output: str,
        init: str,
        input_size: int,
    ) -> None:
        L.check_common(num_classes, in_channels)
        super().__init__(in_channels)
        L.flag("partial", partial)
        L.choice("pool", pool, POOLS), L.choice("activation", activation, ACTIVATIONS)
        L.choice("output", output, OUTPUTS), L.choice("init", init, INITS)
        if input_size not in (28, 32):
            raise CnnlabError(
                f"input_size={input_size!r} is not valid: use 32 (the paper's) or 28 (C1 padded by 2)"
            )
        self.default_input_size = input_size

        def act() -> nn.Module:
            return ScaledTanh() if activation == "scaled_tanh" else L.activation(activation)

        def subsample(channels: int) -> nn.Module:
            if pool == "trainable":
                return Subsampling(channels)
            return nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2)

        c3: nn.Conv2d = PartialConv2d(C3_TABLE, 6, 5) if partial else nn.Conv2d(6, 16, 5)
        # The trainable subsampling units squash their output (Sec. II.B); a plain pool has no units.
        squash = pool == "trainable"
        layers: list[tuple[str, nn.Module]] = [
            ("c1", nn.Conv2d(in_channels, 6, 5, padding=(32 - input_size) // 2)),
            ("act1", act()),
            ("s2", subsample(6)),
            *([("act2", act())] if squash else []),
            ("c3", c3),
            ("act3", act()),
            ("s4", subsample(16)),
            *([("act4", act())] if squash else []),
            ("c5", nn.Conv2d(16, 120, 5)),
            ("act5", act()),
        ]
        self.features = nn.Sequential(OrderedDict(layers))
        # 1x1 at the paper's size, where it is skipped; other sizes (the zoo's tests run 64 px) average C5.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        out: nn.Module = nn.Linear(84, num_classes) if output == "linear" else RBFOutput(84, num_classes)
        self.classifier = nn.Sequential(
            OrderedDict([("f6", nn.Linear(120, 84)), ("act6", act()), ("output", out)])
        )
        self._init(init, activation)

    def _init(self, scheme: str, activation: str) -> None:
        if scheme == "kaiming":
            gain = "tanh" if activation == "scaled_tanh" else activation
            finals = [self.classifier.output] if isinstance(self.classifier.output, nn.Linear) else []
            L.init_weights(self, "kaiming", activation_name=gain, finals=finals)
        elif scheme == "paper":
            # Appendix C: weights uniform in [-2.4/F, 2.4/F], F the unit's fan-in (biases too).
            for m in self.modules():
                if isinstance(m, PartialConv2d):
                    for o, inputs in enumerate(m.table):
                        bound = 2.4 / (len(inputs) * 25)
                        nn.init.uniform_(m.weight[m.slices(o)], -bound, bound)
                        if m.bias is not None:
                            nn.init.uniform_(m.bias[o : o + 1], -bound, bound)
                elif isinstance(m, (nn.Conv2d, nn.Linear)):
                    bound = 2.4 / (m.weight[0].numel())
                    nn.init.uniform_(m.weight, -bound, bound)
                    if m.bias is not None:
                        nn.init.uniform_(m.bias, -bound, bound)
                elif isinstance(m, Subsampling):
                    # Fan-in 4: the paper's coefficient on the sum is U(-0.6, 0.6), i.e. 4x that on the mean.
                    nn.init.uniform_(m.weight, -2.4, 2.4)
                    nn.init.uniform_(m.bias, -0.6, 0.6)

    def first_conv(self) -> list[nn.Conv2d]:
        return L.convs(self.features[0])


@register(
    family="lenet",
    input_size=32,
    in_channels=1,
    paper=PAPER,
    description="LeNet-5 as published: Table I's C3, trainable subsampling, scaled tanh",
)
def lenet5(
    num_classes: int = 1000,
    in_channels: int = 1,  # grey 32x32 digits (the paper's section II.A); the registry's in_channels
    *,
    partial: bool = True,
    pool: str = "trainable",
    activation: str = "scaled_tanh",
    output: str = "linear",
    init: str = "paper",
    input_size: int = 32,
) -> LeNet5:
    return LeNet5(
        num_classes=num_classes,
        in_channels=in_channels,
        partial=partial,
        pool=pool,
        activation=activation,
        output=output,
        init=init,
        input_size=input_size,
    )
