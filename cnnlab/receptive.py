"""The receptive field and jump of every tensor a forward pass makes, in input pixels.

For a layer with kernel k, dilation d and stride s (Araujo et al., Distill 2019):

    k_eff = d * (k - 1) + 1        r_out = r_in + (k_eff - 1) * j_in        j_out = j_in * s

with r = j = 1 at the input image. Padding moves the window but does not widen it, so it leaves r alone.

`FieldTracker` is a `TorchFunctionMode`: it sees every torch function the forward calls at the level the
model's code calls it (`F.conv2d` inside `nn.Conv2d`, a bare `F.max_pool2d` in a user's forward, `torch.cat`
in an Inception block), so functional pools count as much as module ones. A convolution or pool moves the
field by the rule above; any other op (activations, normalisation, views, additions, concatenation) gives
its output the largest field of its tensor inputs: a unit reading several branches sees what the widest one
sees. Where those inputs differ (Inception's four branches), the tracker remembers the smallest and the
largest, so a table can say the block's field is the largest of its branches. Adaptive pools have no fixed
window: their largest window and largest step are computed from the input and output sizes, as PyTorch
places them (start floor(i*in/out), end ceil((i+1)*in/out)). Transposed convolutions and interpolation are
not modelled (they pass the field on unchanged).
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

Pair = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class Field:
    """What one unit of a tensor sees: `size` input pixels per side, its neighbours `jump` pixels apart."""

    size: Pair
    jump: Pair
    smallest: Pair | None = None  # set where the tensor joins inputs that see different fields

    def grow(self, kernel: Pair, stride: Pair, dilation: Pair = (1, 1)) -> Field:
        size = tuple(
            r + (d * (k - 1) + 1 - 1) * j
            for r, k, d, j in zip(self.size, kernel, dilation, self.jump, strict=True)
        )
        jump = tuple(j * s for j, s in zip(self.jump, stride, strict=True))
        return Field((size[0], size[1]), (jump[0], jump[1]))


INPUT = Field((1, 1), (1, 1))


def _pair(v: Any, default: Any = None) -> Pair:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        v = default
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[-1]))


def adaptive_window(size: int, out: int) -> tuple[int, int]:
    """(largest window, largest step) of an adaptive pool from `size` to `out` positions on one side."""
    starts = [math.floor(i * size / out) for i in range(out)]
    ends = [math.ceil((i + 1) * size / out) for i in range(out)]
    kernel = max(e - s for s, e in zip(starts, ends, strict=True))
    step = max((b - a for a, b in itertools.pairwise(starts)), default=size)
    return kernel, step


# Arguments after the input, in order, of the functional ops that move the field (torch's own signatures).
_CONV = ("weight", "bias", "stride", "padding", "dilation", "groups")
_MAXPOOL = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVGPOOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "conv2d": _CONV,
    "max_pool2d": _MAXPOOL,
    "_max_pool2d": _MAXPOOL,
    "max_pool2d_with_indices": _MAXPOOL,
    "avg_pool2d": _AVGPOOL,
}
_ADAPTIVE = {
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "_adaptive_max_pool2d",
    "adaptive_max_pool2d_with_indices",
}


def _bind(names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = dict(zip(names, args[1:], strict=False))
    bound.update({k: v for k, v in kwargs.items() if k != "input"})
    return bound


def _tensors(x: Any) -> Iterator[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)


def _name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__name__", ""))


class FieldTracker(TorchFunctionMode):
    """Records the `Field` of every tensor made while it is active; `of(tensor)` reads one back.

    Entries are keyed by the tensor's id and dropped when the tensor is freed (a weak reference), so a
    later tensor reusing the id never inherits a stale field. `paused` lets hook code run untracked.
    """

    def __init__(self) -> None:
        super().__init__()
        self._fields: dict[int, tuple[Field, weakref.ref[torch.Tensor]]] = {}
        self.paused = False

    def set(self, t: torch.Tensor, f: Field) -> None:
        key = id(t)

        def forget(_: object) -> None:
            self._fields.pop(key, None)

        self._fields[key] = (f, weakref.ref(t, forget))

    def of(self, t: torch.Tensor) -> Field | None:
        entry = self._fields.get(id(t))
        return entry[0] if entry is not None and entry[1]() is t else None

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.paused:
            return out
        known = [f for f in (self.of(t) for t in _tensors((args, kwargs))) if f is not None]
        if not known:
            return out
        widest = max(known, key=lambda f: f.size[0] * f.size[1])
        field = Field(widest.size, max(f.jump for f in known))
        sizes = {f.size for f in known}
        if len(sizes) > 1:
            field = Field(field.size, field.jump, min(sizes, key=lambda s: s[0] * s[1]))
        result = out[0] if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) else out
        if isinstance(result, torch.Tensor) and isinstance(args[0] if args else None, torch.Tensor):
            field = self._move(_name(func), args, kwargs, field, result)
        for t in _tensors(out):
            self.set(t, field)
        return out

    @staticmethod
    def _move(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], f: Field, out: torch.Tensor) -> Field:
        x = args[0]
        if name in _SIGNATURES:
            a = _bind(_SIGNATURES[name], args, kwargs)
            if name == "conv2d":
                kernel = (int(a["weight"].shape[-2]), int(a["weight"].shape[-1]))
                stride = _pair(a.get("stride"), 1)
            else:
                kernel = _pair(a["kernel_size"])
                stride = _pair(a.get("stride"), kernel)
            return Field(f.size, f.jump).grow(kernel, stride, _pair(a.get("dilation"), 1))
        if name in _ADAPTIVE and x.dim() >= 3 and out.dim() >= 3:
            h = adaptive_window(int(x.shape[-2]), int(out.shape[-2]))
            w = adaptive_window(int(x.shape[-1]), int(out.shape[-1]))
            return Field(f.size, f.jump).grow((h[0], w[0]), (h[1], w[1]))
        return f


def text(size: Pair) -> str:
    """'163', or '7x5' for a field that is not square."""
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"
