"""Pieces every model family shares: activations, the paper's LRN, pooling, init schemes, input checks.

Each switch the papers discuss (AlexNet Sec. 3.1-3.4 and 4.2, VGG Sec. 3.1) is validated and built here, once,
so `alexnet.py`, `vgg.py` and `googlenet.py` only say where the layers go.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError

# Name -> (module factory, nonlinearity name for `nn.init.calculate_gain`).
# ReLU-family layers run in place: the conv output they overwrite is not needed by autograd.
Nonlinearity = Literal["relu", "tanh", "sigmoid", "leaky_relu", "linear"]
ACTIVATIONS: dict[str, tuple[type[nn.Module], dict[str, object], Nonlinearity]] = {
    "relu": (nn.ReLU, {"inplace": True}, "relu"),
    "tanh": (nn.Tanh, {}, "tanh"),
    "sigmoid": (nn.Sigmoid, {}, "sigmoid"),
    "leaky_relu": (nn.LeakyReLU, {"negative_slope": 0.01, "inplace": True}, "leaky_relu"),
    "elu": (nn.ELU, {"inplace": True}, "relu"),
    # SELU wants LeCun-normal weights (Klambauer et al. 2017), i.e. gain 1.
    "selu": (nn.SELU, {"inplace": True}, "linear"),
}

# AlexNet family: `paper` is Sec. 5 (N(0, 0.01), biases 1 in conv2/4/5 and the hidden fc layers);
# `paper_bias01` is the same with 0.1, what Caffe's reference model used because bias 1 left the loss flat.
INITS = ("paper", "paper_bias01", "kaiming", "default")


def choice(switch: str, value: object, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed`, else a CnnlabError naming them."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise CnnlabError(f"{switch}={value!r} is not valid: use one of {', '.join(allowed)}")
    return value


def rate(switch: str, value: object) -> float:
    """A probability in [0, 1): dropout 1.0 would zero every unit."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise CnnlabError(f"{switch}={value!r} is not valid: give a rate in [0, 1), e.g. 0.5")
    return float(value)


def positive(switch: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise CnnlabError(f"{switch}={value!r} is not valid: give a positive number, e.g. 1.0")
    return float(value)


def flag(switch: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise CnnlabError(f"{switch}={value!r} is not valid: use true or false")
    return value


def check_common(num_classes: object, in_channels: object) -> None:
    for switch, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CnnlabError(f"{switch}={value!r} is not valid: give a positive whole number")


def activation(name: str) -> nn.Module:
    """A fresh activation module (`relu`, `tanh`, `sigmoid`, `leaky_relu`, `elu`, `selu`)."""
    factory, kwargs, _ = ACTIVATIONS[choice("activation", name, ACTIVATIONS)]
    return factory(**kwargs)


def scaled(width: float, channels: int) -> int:
    """Channels times a width multiplier, at least 1 (for the `width` switch)."""
    return max(1, round(channels * width))


@dataclass(frozen=True)
class LRNParams:
    """Local response normalisation's constants, alpha in the paper's convention (not divided by n)."""

    size: int  # n, the number of adjacent maps summed over
    alpha: float
    beta: float
    k: float


# AlexNet section 3.3: "k = 2, n = 5, alpha = 10^-4, and beta = 0.75", chosen on a validation set.
ALEXNET_LRN = LRNParams(size=5, alpha=1e-4, beta=0.75, k=2.0)


class LocalResponseNorm(nn.Module):
    """Local response normalisation across channels, AlexNet Sec. 3.3, with the paper's alpha convention.

    b_i = a_i / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2) ** beta. PyTorch's `nn.LocalResponseNorm` and Caffe
    multiply the sum by alpha / n instead of alpha, so the paper's alpha=1e-4 is alpha=5e-4 there; this
    module takes the paper's value. `groups` normalises each tower's maps apart, as the paper's two GPUs
    did (a map on one GPU never saw the other GPU's maps).

    Same result as `F.local_response_norm` (the window is i - n//2 .. i + (n-1)//2) at 2-10x its speed on
    CPU: its avg_pool3d is slow, so the window sum is a 1x1 conv with a 0/1 band matrix (few channels, fast
    in channels-last) or a sum of n shifted slices (many channels).
    """

    band: torch.Tensor | None

    def __init__(
        self,
        channels: int,
        size: int = ALEXNET_LRN.size,
        alpha: float = ALEXNET_LRN.alpha,
        beta: float = ALEXNET_LRN.beta,
        k: float = ALEXNET_LRN.k,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"{channels} channels do not split into {groups} groups")
        self.channels, self.size, self.alpha, self.beta, self.k, self.groups = (
            channels,
            size,
            alpha,
            beta,
            k,
            groups,
        )
        band = None
        if channels <= 64:
            index = torch.arange(channels)
            offset = index[None, :] - index[:, None]  # [i, j] = j - i
            same_group = (index[:, None] // (channels // groups)) == (index[None, :] // (channels // groups))
            inside = (offset >= -(size // 2)) & (offset <= (size - 1) // 2) & same_group
            band = inside.float()[:, :, None, None]
        # Not persistent: the band is derived, so state dicts stay key-for-key those of torchvision/Caffe.
        self.register_buffer("band", band, persistent=False)

    @classmethod
    def of(cls, channels: int, params: LRNParams, groups: int = 1) -> LocalResponseNorm:
        return cls(channels, params.size, params.alpha, params.beta, params.k, groups)

    def _window_sum(self, sq: torch.Tensor) -> torch.Tensor:
        if self.band is not None:
            return F.conv2d(sq, self.band.to(sq.dtype))
        sums = []
        for part in sq.chunk(self.groups, dim=1):
            c = part.shape[1]
            padded = F.pad(part, (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))
            total = padded[:, 0:c]
            for i in range(1, self.size):
                total = total + padded[:, i : i + c]
            sums.append(total)
        return sums[0] if len(sums) == 1 else torch.cat(sums, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # Sums of squares overflow float16: normalise in float32 (or the input's own float64) even under
        # autocast, and hand back the input's type.
        work = torch.float64 if dtype == torch.float64 else torch.float32
        with torch.autocast(x.device.type, enabled=False) if _autocasting(x) else _nothing():
            xw = x.to(work)
            denom = self._window_sum(xw * xw).mul(self.alpha).add_(self.k)
            # d ** -beta as exp(-beta * log d): the same value (d >= k > 0), 4x faster than pow on CPU.
            return (xw * denom.log().mul_(-self.beta).exp_()).to(dtype)

    def extra_repr(self) -> str:
        groups = f", groups={self.groups}" if self.groups > 1 else ""
        return (
            f"{self.channels}, size={self.size}, alpha={self.alpha} (paper convention: "
            f"{self.alpha * self.size:g} in nn.LocalResponseNorm's), beta={self.beta}, k={self.k}{groups}"
        )


def _autocasting(x: torch.Tensor) -> bool:
    return x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)


def _nothing() -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


def max_pool(overlap: bool, padding: int = 0) -> nn.MaxPool2d:
    """AlexNet Sec. 3.4: overlapping 3x3 stride 2 (z=3, s=2) or the traditional 2x2 stride 2.

    `padding` applies to the 3x3 window only (the small-image net pads so 28 and 32 px both end at 4x4).
    """
    if flag("overlap_pool", overlap):
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=padding)
    return nn.MaxPool2d(kernel_size=2, stride=2)


def init_weights(
    model: nn.Module,
    scheme: str,
    *,
    activation_name: str = "relu",
    bias_one: Iterable[nn.Module] = (),
    finals: Iterable[nn.Module] = (),
    allowed: Iterable[str] = INITS,
    paper_std: float = 0.01,
) -> None:
    """Initialise every conv and linear layer of `model` by `scheme`.

    `paper`/`paper_bias01`: weights N(0, paper_std), biases 0 except the layers in `bias_one` (1 or 0.1).
    `kaiming`: He-normal (fan in) with the gain of `activation_name`, biases 0; the classifier layers in
    `finals` N(0, 0.01) so the first logits are small. `default`: leave PyTorch's own initialisation.
    """
    choice("init", scheme, allowed)
    if scheme == "default":
        return
    ones = {id(m) for m in bias_one}
    last = {id(m) for m in finals}
    _, _, nonlinearity = ACTIVATIONS[activation_name]
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "kaiming" and id(module) not in last:
                slope = 0.01 if nonlinearity == "leaky_relu" else 0.0
                nn.init.kaiming_normal_(module.weight, a=slope, nonlinearity=nonlinearity)
            elif scheme == "kaiming":
                nn.init.normal_(module.weight, 0.0, 0.01)
            else:
                nn.init.normal_(module.weight, 0.0, paper_std)
            if module.bias is not None:
                value = 0.0
                if id(module) in ones and scheme.startswith("paper"):
                    value = 1.0 if scheme == "paper" else 0.1
                nn.init.constant_(module.bias, value)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------------------------
# Input-size checks: one pass over the layer geometry per new input size, never per batch.


def _out_size(module: nn.Module, size: int) -> int:
    """The conv/pool output side for input side `size`, PyTorch's rule: floor((in + 2p - d(k-1) - 1) / s) + 1.

    With ceil_mode pools round up instead, but drop a last window that would start in the right padding.
    """
    k = _first(module.kernel_size)  # type: ignore[arg-type]
    s = _first(module.stride)  # type: ignore[arg-type]
    p = _first(module.padding)  # type: ignore[arg-type]
    d = _first(getattr(module, "dilation", 1))
    ceil = bool(getattr(module, "ceil_mode", False))
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _first(value: int | tuple[int, ...] | str) -> int:
    if isinstance(value, str):  # padding="same"/"valid" is not used by our models
        raise TypeError(f"unsupported padding {value!r}")
    return value if isinstance(value, int) else value[0]


def trace_sizes(layers: list[tuple[str, nn.Module]], size: int) -> tuple[int, str | None, int]:
    """Follow one side through `layers`: (final side, layer where it reached zero or None, its input)."""
    for name, module in layers:
        out = _out_size(module, size)
        if out < 1:
            return 0, name, size
        size = out
    return size, None, size


def smallest_side(layers: list[tuple[str, nn.Module]], limit: int = 8192) -> int:
    """The smallest square side that reaches the end of `layers` (sizes grow monotonically, so scan)."""
    for side in range(1, limit):
        if trace_sizes(layers, side)[1] is None:
            return side
    raise ValueError("no input side up to the limit fits these layers")


class Net(nn.Module):
    """Base of every cnnlab model: input validation, `embed` and `first_conv`.

    Subclasses list their size-changing layers in order (`spatial_layers`); the forward pass calls
    `check_input` first, which costs one set lookup once a size has been seen. The methods here serve the
    torchvision layout (`features`, an adaptive `avgpool`, `classifier`); a model of another shape
    overrides them.
    """

    arch: str = "net"
    default_input_size: int = 224
    family: ClassVar[str] = ""
    features: nn.Sequential
    avgpool: nn.AdaptiveAvgPool2d
    classifier: nn.Sequential

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self._sizes_ok: set[tuple[int, int]] = set()

    def spatial_layers(self) -> list[tuple[str, nn.Module]]:
        return modules_named(self.features, SIZE_CHANGING)

    def forward(self, x: torch.Tensor) -> Any:  # Any: GoogLeNet's adds its auxiliary outputs in training
        return self.classifier[-1](self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations, the input of the final linear layer: [N, D]."""
        self.check_input(x)
        x = self.features(x)
        out = self.avgpool.output_size
        if tuple(x.shape[-2:]) != ((out, out) if isinstance(out, int) else out):
            x = self.avgpool(x)  # skipped where it is the identity (the features already have its size)
        return self.classifier[:-1](torch.flatten(x, 1))

    def first_conv(self) -> list[nn.Conv2d]:
        """The first convolution, one per tower (the paper's Figure 3 shows both towers' filters)."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise CnnlabError(
                f"{self.arch} expects input [N, {self.in_channels}, H, W], got {list(x.shape)}: "
                f"build it with in_channels={x.shape[1] if x.dim() == 4 else '?'} or fix the data"
            )
        hw = (int(x.shape[2]), int(x.shape[3]))
        if hw in self._sizes_ok or torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        layers = self.spatial_layers()
        for side in hw:
            _, where, reached = trace_sizes(layers, side)
            if where is not None:
                raise CnnlabError(
                    f"input {hw[0]}x{hw[1]} is too small for {self.arch}: the spatial size reaches zero "
                    f"at layer {where} (its input is {reached} px); use inputs of at least "
                    f"{smallest_side(layers)}x{smallest_side(layers)} px"
                )
        self._sizes_ok.add(hw)


def convs(*modules: nn.Module) -> list[nn.Conv2d]:
    """`modules` as the list of convolutions `Net.first_conv` returns (each checked to be one)."""
    found = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert len(found) == len(modules), "first_conv must name nn.Conv2d layers"
    return found


def modules_named(container: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[tuple[str, nn.Module]]:
    """(name, module) for every module of `kinds` in registration order (= forward order of Sequentials)."""
    return [(name, m) for name, m in container.named_modules() if isinstance(m, kinds) and name]


SIZE_CHANGING = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
