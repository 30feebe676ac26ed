"""Per-layer arithmetic: FLOPs of one layer call and the worked output-size formula.

FLOP convention (used by `summary` and `compare`): one multiply-add counts 2 FLOPs and the bias add is
folded into it (a k-term dot product plus bias is k multiplies and k adds), so conv and linear layers
agree with `torch.utils.flop_counter`. Cheaper ops are counted per output element: pooling k*k (one
compare or add per window element), LRN 2*size+3 (size squares, size adds, then scale, offset, power and
divide; paper section 3.3), batch norm 2 (folded scale and shift, inference), activations 1, dropout and
reshapes 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

_Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor], int]


def first_tensor(x: object) -> torch.Tensor | None:
    """A layer call's tensor: the value itself, or the first of a tuple or list of inputs or outputs."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    return None


def pair(v: int | tuple[int, ...] | str) -> tuple[int, int]:
    """(height, width) of a PyTorch size argument; ValueError for string paddings such as 'same'."""
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, str):
        raise ValueError(v)
    return (int(v[0]), int(v[-1]))


@dataclass(frozen=True)
class Geometry:
    """A conv's or fixed-window pool's geometry per side (height, width), padding as numbers:
    padding="valid" is 0, padding="same" the padding that keeps the size (PyTorch puts the odd pixel of an
    even total on the bottom/right side; `padding` then holds half the total, a half-integer)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[float, float]
    dilation: tuple[int, int]
    ceil_mode: bool = False


def geometry(m: nn.Module) -> Geometry | None:
    """The one reading of a layer's window geometry, shared by `summary` and `check`; None for layers
    without one (linear, adaptive pools, activations)."""
    if not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return None
    k = pair(m.kernel_size)
    stride = m.stride if m.stride is not None else m.kernel_size  # a pool's stride defaults to its kernel
    s = pair(stride)
    d = pair(getattr(m, "dilation", 1))
    padding = m.padding
    if padding == "valid":
        p: tuple[float, float] = (0, 0)
    elif padding == "same":
        p = (d[0] * (k[0] - 1) / 2, d[1] * (k[1] - 1) / 2)
        p = (int(p[0]) if p[0] == int(p[0]) else p[0], int(p[1]) if p[1] == int(p[1]) else p[1])
    else:
        p = pair(padding)
    return Geometry(k, s, p, d, bool(getattr(m, "ceil_mode", False)))


def _conv(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    assert isinstance(m, nn.Conv2d)
    return 2 * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]


def _linear(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    assert isinstance(m, nn.Linear)
    return 2 * m.in_features


def _pool(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # Adaptive windows vary by position; the largest is ceil(in / out) per side.
        return math.prod(math.ceil(i / o) for i, o in zip(inp.shape[-2:], out.shape[-2:], strict=True))
    k = pair(m.kernel_size)  # type: ignore[arg-type]
    return k[0] * k[1]


def is_lrn(m: nn.Module) -> bool:
    """PyTorch's LRN or cnnlab's (paper's alpha convention, optional towers): matched by name and `size`."""
    return type(m).__name__ == "LocalResponseNorm" and isinstance(getattr(m, "size", None), int)


def _lrn(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    return 2 * int(m.size) + 3  # type: ignore[arg-type]


def _const(n: int) -> _Rule:
    return lambda m, i, o: n


# Activation layers by class name -> the name the papers and cnnlab's switches use. Every one costs 1 FLOP
# per output element (module docstring), LeNet-5's scaled tanh included; `check` names them with it.
ACTIVATIONS = {
    "ReLU": "relu",
    "ReLU6": "relu6",
    "LeakyReLU": "leaky_relu",
    "PReLU": "prelu",
    "ELU": "elu",
    "SELU": "selu",
    "CELU": "celu",
    "GELU": "gelu",
    "SiLU": "silu",
    "Mish": "mish",
    "Tanh": "tanh",
    "Hardtanh": "hardtanh",
    "Sigmoid": "sigmoid",
    "Softplus": "softplus",
    "ScaledTanh": "scaled_tanh",
}


# FLOPs per output element, by layer type (checked in order with isinstance, so subclasses count too).
RULES: tuple[tuple[type[nn.Module] | tuple[type[nn.Module], ...], _Rule], ...] = (
    (nn.Conv2d, _conv),
    (nn.Linear, _linear),
    ((nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), _pool),
    ((nn.BatchNorm1d, nn.BatchNorm2d), _const(2)),
    ((nn.Softmax, nn.LogSoftmax), _const(3)),
)


def layer_flops(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """FLOPs of one call of leaf module `m` for one image; 0 for dropout, flatten, identity."""
    if isinstance(m, nn.Conv2d) and m.weight.dim() != 4:
        # A conv holding only some of its input slices (LeNet-5's C3): a multiply-add per weight per pixel.
        return 2 * m.weight.numel() * out.shape[-2] * out.shape[-1]
    if is_lrn(m):
        return _lrn(m, inp, out) * out[0].numel()
    for cls, rule in RULES:
        if isinstance(m, cls):
            return rule(m, inp, out) * out[0].numel()
    if type(m).__name__ in ACTIVATIONS:
        return out[0].numel()
    return 0


def layer_macs(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-adds of one call of a weight layer (conv, linear) for one image, the unit the VGG and
    GoogLeNet papers count cost in (GoogLeNet sec. 5: "1.5 billion multiply-adds"); 0 for other layers.
    Half the layer's FLOPs under this module's convention."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        return layer_flops(m, inp, out) // 2
    return 0


def size_formula(
    size: int, kernel: int, stride: int, pad: float, dilation: int = 1, ceil_mode: bool = False
) -> tuple[str, int, float]:
    """The worked formula for one side: (text, output size, the exact value before rounding)."""
    span = dilation * (kernel - 1) + 1
    exact = (size + 2 * pad - span) / stride + 1
    out = int((math.ceil if ceil_mode else math.floor)((size + 2 * pad - span) / stride)) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # PyTorch's rule: the last window must start inside the input or its left padding
    k_text = str(kernel) if dilation == 1 else f"{span}"
    rnd = "ceil" if ceil_mode else "floor"
    text = f"{rnd}(({size} + 2*{pad} - {k_text})/{stride}) + 1 = {out}"
    if exact != out:
        text += f"  [exact {exact:g}]"
    return text, out, exact


def layer_formula(m: nn.Module, inp: torch.Tensor) -> tuple[str, float] | None:
    """(worked formula, exact height) for conv and fixed-window pool layers, else None."""
    g = geometry(m)
    if g is None:
        return None
    k, s, p, d, ceil = g.kernel, g.stride, g.padding, g.dilation, g.ceil_mode
    h, w = int(inp.shape[-2]), int(inp.shape[-1])
    th, _, eh = size_formula(h, k[0], s[0], p[0], d[0], ceil)
    if (h, k[0], s[0], p[0], d[0]) == (w, k[1], s[1], p[1], d[1]):
        return th, eh
    return f"H: {th}; W: {size_formula(w, k[1], s[1], p[1], d[1], ceil)[0]}", eh


def misfit_note(m: nn.Conv2d, size: int, exact: float) -> str | None:
    """Why an input side does not tile an unpadded first conv, and what would (224 vs 227: docs/models.md)."""
    g = geometry(m)
    assert g is not None
    k, s, p = g.kernel, g.stride, g.padding
    if p[0] != 0 or exact == math.floor(exact):
        return None
    target = math.ceil(exact)  # the next whole output size
    fit = (target - 1) * s[0] + k[0]  # the input side that gives it exactly
    pad = math.ceil((fit - size) / 2)  # the padding that gives it at this input side
    return (
        f"input {size} does not tile this layer: ({size} - {k[0]})/{s[0]} + 1 = {exact:g}, floor gives "
        f"{math.floor(exact)}, not {target}; input {fit} gives {target} exactly, or {size} with padding "
        f"{pad} gives {target} (why AlexNet ports use 227, or 224 with padding 2)"
    )
