"""What a network really does: one forward pass with hooks, every leaf layer call in order, grouped in stages.

A stage is a weight layer (convolution or fully connected) with the layers that follow it up to the next
weight layer: its activation, normalisation, pooling and dropout. Stages are what the papers' tables list
("conv1: 96 filters 11x11 stride 4, ReLU, LRN, max-pool"), so `cnnlab check` aligns two networks stage by
stage: the n-th convolution of one with the n-th of the other, the n-th fc layer with the n-th.

Layers are seen as modules (forward hooks) and as functional calls made outside any leaf module
(`F.relu`, `F.max_pool2d`, `F.local_response_norm`, `F.dropout`, `torch.flatten`, `F.softmax`, ..., through a
`TorchFunctionMode`), so a net written with a functional forward is read like one of modules. Layers a
module calls more than once (one `nn.ReLU` shared by every conv) get one row per call.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cnnlab.counting import ACTIVATIONS, first_tensor, geometry, is_lrn, pair
from cnnlab.errors import CnnlabError

DROPOUTS = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


@dataclass
class Op:
    """One call of a leaf layer: its kind, the settings `check` compares, and the shapes around it."""

    name: str  # path in the model (features.conv1, classifier.1)
    kind: str  # conv, linear, pool, lrn, act, dropout, norm, other
    type: str  # class name
    attrs: dict[str, Any]
    params: int
    in_shape: tuple[int, ...]  # one sample, without the batch dimension
    out_shape: tuple[int, ...]
    module: nn.Module | None = field(default=None, repr=False, compare=False)

    def settings(self) -> str:
        """The layer as a reader of the paper's table writes it."""
        a = self.attrs
        if self.kind == "conv":
            k, s, p = a["kernel"], a["stride"], a["padding"]
            text = f"conv {a['out']} {k[0]}x{k[1]}/{s[0]}" + (f" pad {p[0]}" if p != (0, 0) else "")
            return text + (f" groups {a['groups']}" if a["groups"] > 1 else "")
        if self.kind == "linear":
            return f"fc {a['out']}"
        if self.kind == "pool":
            if a["op"].startswith("adaptive"):
                return f"{a['op']} pool to {a['kernel']}"
            return f"{a['op']} pool {a['kernel'][0]}x{a['kernel'][1]}/{a['stride'][0]}"
        if self.kind == "lrn":
            return f"LRN n={a['size']} alpha={a['alpha']:g} beta={a['beta']:g} k={a['k']:g}"
        if self.kind == "act":
            return a["fn"]
        if self.kind == "dropout":
            return f"{self.type}(p={a['p']:g})"
        return self.type


def _classify(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[str, dict[str, Any]]:
    name = type(m).__name__
    g = geometry(m)
    if isinstance(m, nn.Conv2d) and g is not None:
        attrs = {
            "out": m.out_channels,
            "kernel": g.kernel,
            "stride": g.stride,
            "padding": g.padding,  # padding="same"/"valid" as the numbers they mean
            "groups": m.groups,
            "slices": m.weight.shape[0] if m.weight.dim() != 4 else None,  # LeNet-5's partial C3
        }
        return "conv", attrs
    if isinstance(m, nn.Linear) or name == "RBFOutput":
        return "linear", {"out": int(getattr(m, "out_features", out.shape[-1])), "in": inp.shape[-1]}
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        if tuple(inp.shape[-2:]) == tuple(out.shape[-2:]):
            return "other", {"identity": True}  # pooling a 6x6 map to 6x6 does nothing
        op = "adaptive_avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "adaptive_max"
        return "pool", {"op": op, "kernel": tuple(out.shape[-2:]), "stride": None, "padding": None}
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and g is not None:
        op = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        if op == "avg" and any(True for _ in m.parameters(recurse=False)):
            op = "trainable"  # LeNet-5's subsampling: average x coefficient + bias
        return "pool", {"op": op, "kernel": g.kernel, "stride": g.stride, "padding": g.padding}
    if is_lrn(m):
        size = int(m.size)  # type: ignore[arg-type]
        alpha = float(m.alpha)  # type: ignore[arg-type]
        # PyTorch's (and Caffe's) LRN multiply the sum of squares by alpha / n; cnnlab's and the paper's
        # by alpha. Compare in the paper's convention (AlexNet Sec. 3.3).
        torch_convention = isinstance(m, nn.LocalResponseNorm)
        paper_alpha = alpha / size if torch_convention else alpha
        attrs = {"size": size, "alpha": paper_alpha, "beta": float(m.beta), "k": float(m.k)}  # type: ignore[arg-type]
        attrs["given_alpha"] = alpha
        attrs["torch_convention"] = torch_convention
        return "lrn", attrs
    if name in ACTIVATIONS:
        return "act", {"fn": ACTIVATIONS[name]}
    if name in DROPOUTS:
        return "dropout", {"p": float(getattr(m, "p", 0.0)), "type": name}
    if isinstance(m, NORMS):
        return "norm", {"type": name}
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        return "softmax", {"fn": name}
    return "other", {}


# Functional calls recorded when a forward makes them outside any leaf module: name -> how to read them.
_FUNCTIONAL_ACTS = {
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "leaky_relu": "leaky_relu",
    "leaky_relu_": "leaky_relu", "elu": "elu", "elu_": "elu", "selu": "selu", "celu": "celu",
    "gelu": "gelu", "silu": "silu",
    "mish": "mish", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "hardtanh": "hardtanh", "softplus": "softplus",
}  # fmt: skip
_FUNCTIONAL_DROPOUTS = {
    "dropout": "Dropout", "dropout1d": "Dropout1d", "dropout2d": "Dropout2d", "dropout3d": "Dropout3d",
    "alpha_dropout": "AlphaDropout", "feature_alpha_dropout": "FeatureAlphaDropout",
}  # fmt: skip
_FUNCTIONAL_OTHER = {"flatten", "softmax", "log_softmax"}


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def _classify_call(
    fn: str, args: tuple[Any, ...], kwargs: dict[str, Any], inp: torch.Tensor, out: torch.Tensor
) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, type, attrs) of a functional call `check` compares, else None (not a layer)."""
    if fn in _FUNCTIONAL_ACTS:
        return "act", f"F.{fn}", {"fn": _FUNCTIONAL_ACTS[fn]}
    if fn in ("max_pool2d", "avg_pool2d"):
        k = pair(_arg(args, kwargs, 1, "kernel_size", 1))
        stride = _arg(args, kwargs, 2, "stride", None)
        s = pair(stride) if stride not in (None, []) else k
        p = pair(_arg(args, kwargs, 3, "padding", 0))
        return "pool", f"F.{fn}", {"op": fn.split("_")[0], "kernel": k, "stride": s, "padding": p}
    if fn in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        if tuple(inp.shape[-2:]) == tuple(out.shape[-2:]):
            return "other", f"F.{fn}", {"identity": True}
        op = "adaptive_avg" if "avg" in fn else "adaptive_max"
        return "pool", f"F.{fn}", {"op": op, "kernel": tuple(out.shape[-2:]), "stride": None, "padding": None}
    if fn == "local_response_norm":
        size = int(_arg(args, kwargs, 1, "size", 5))
        alpha = float(_arg(args, kwargs, 2, "alpha", 1e-4))
        beta, offset = float(_arg(args, kwargs, 3, "beta", 0.75)), float(_arg(args, kwargs, 4, "k", 1.0))
        attrs = {"size": size, "alpha": alpha / size, "beta": beta, "k": offset, "given_alpha": alpha}
        return "lrn", "F.local_response_norm", {**attrs, "torch_convention": True}
    if fn in _FUNCTIONAL_DROPOUTS:
        rate = float(_arg(args, kwargs, 1, "p", 0.5))
        return "dropout", _FUNCTIONAL_DROPOUTS[fn], {"p": rate, "type": _FUNCTIONAL_DROPOUTS[fn]}
    if fn in ("softmax", "log_softmax"):
        return "softmax", f"F.{fn}", {"fn": fn}
    if fn in _FUNCTIONAL_OTHER:
        return "other", f"torch.{fn}", {}
    return None


class _Functional(TorchFunctionMode):
    """Calls the forward makes itself (not inside a leaf module), reported to `on_call`."""

    def __init__(self, in_leaf: Callable[[], bool], on_call: Callable[..., None]) -> None:
        super().__init__()
        self.in_leaf, self.on_call = in_leaf, on_call

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not self.in_leaf():
            self.on_call(getattr(func, "__name__", ""), tuple(args), dict(kwargs), result)
        return result


def _layer_op(name: str, m: nn.Module, args: tuple[Any, ...], output: Any, seen: set[int]) -> list[Op]:
    """The Op of one leaf layer's call ([] when it did not map a tensor to a tensor)."""
    inp, out = first_tensor(args), first_tensor(output)
    if inp is None or out is None:
        return []
    kind, attrs = _classify(m, inp, out)
    params = 0
    if id(m) not in seen:  # a layer called twice counts its parameters once
        seen.add(id(m))
        params = sum(p.numel() for p in m.parameters(recurse=False))
    shape_in, shape_out = tuple(inp.shape[1:]), tuple(out.shape[1:])
    return [Op(name, kind, type(m).__name__, attrs, params, shape_in, shape_out, m)]


def _call_op(fn: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, owner: str) -> list[Op]:
    """The Op of one functional layer call (F.relu, ...) inside module `owner` ([] for other calls)."""
    inp, out = first_tensor(args), first_tensor(result)
    if inp is None or out is None:
        return []
    found = _classify_call(fn, args, kwargs, inp, out)
    if found is None:
        return []
    kind, type_name, attrs = found
    name = f"{owner}.{type_name}" if owner else type_name
    return [Op(name, kind, type_name, attrs, 0, tuple(inp.shape[1:]), tuple(out.shape[1:]))]


def _register(model: nn.Module, hook: Any, enter: Any, leave: Any) -> list[Any]:
    """`hook` on every leaf layer (with its name), `enter` and `leave` around every module's forward."""
    handles = [
        m.register_forward_hook(lambda mod, a, o, name=name: hook(name, mod, a, o))
        for name, m in model.named_modules()
        if name and not any(m.children())
    ]
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(enter))
        handles.append(m.register_forward_hook(leave))
    return handles


def _forward_error(
    exc: BaseException,
    ops: list[Op],
    failing: list[tuple[str, nn.Module, Any]],
    input_size: tuple[int, int, int],
) -> CnnlabError:
    """The one line for a forward that failed: a fully connected layer of the wrong width named as such."""
    after = f" after layer {ops[-1].name} ({'x'.join(map(str, ops[-1].out_shape))})" if ops else ""
    text = " ".join(str(exc).split()) or type(exc).__name__
    size = "x".join(map(str, input_size))
    if failing and isinstance(failing[0][1], nn.Linear) and failing[0][2] is not None:
        name, linear, x = failing[0]
        got, wants = int(x.shape[-1]), int(getattr(linear, "in_features", 0))
        if got != wants:
            fc = sum(1 for op in ops if op.kind == "linear") + 1
            maps = [op.out_shape for op in ops if len(op.out_shape) == 3]
            shown = f"{'x'.join(map(str, maps[-1]))} maps" if maps else "the input"
            return CnnlabError(
                f"fully connected layer {fc} ({name}) takes {wants:,} inputs but gets {got:,} "
                f"({shown} flattened, at a {size} input); set its in_features to {got:,}, or change "
                "the layers before it"
            )
    return CnnlabError(
        f"the forward pass on a {size} input failed{after}: {type(exc).__name__}: {text}; "
        "give the input your network expects with --input-size"
    )


def record(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[list[Op], torch.Tensor]:
    """Every leaf layer call and every functional layer call (F.relu, F.max_pool2d, ...) of one eval-mode
    forward on zeros of `input_size`, in order, and the output."""
    ops: list[Op] = []
    seen: set[int] = set()
    names = {id(m): name for name, m in model.named_modules()}
    leaves = {id(m) for _, m in model.named_modules() if not any(m.children())} - {id(model)}
    running: list[str] = []  # the modules whose forward is running, outermost first
    in_leaf = [0]

    def hook(name: str, m: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        ops.extend(_layer_op(name, m, args, output, seen))

    def on_call(fn: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> None:
        ops.extend(_call_op(fn, args, kwargs, result, running[-1] if running else ""))

    failing: list[tuple[str, nn.Module, Any]] = []  # the last leaf entered, and its input

    def enter(m: nn.Module, args: Any) -> None:
        running.append(names.get(id(m), ""))
        in_leaf[0] += id(m) in leaves
        if id(m) in leaves:
            failing[:] = [(names.get(id(m), ""), m, first_tensor(args))]

    def leave(m: nn.Module, _args: Any, _out: Any) -> None:
        running.pop()
        in_leaf[0] -= id(m) in leaves

    handles = _register(model, hook, enter, leave)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    try:
        model.eval()
        functional = _Functional(lambda: in_leaf[0] > 0, on_call)
        with torch.no_grad(), warnings.catch_warnings(), functional:
            warnings.simplefilter("ignore")  # Dropout2d on fc outputs warns; check reports it instead
            output = model(torch.zeros(1, *input_size, device=device))
    except CnnlabError:
        raise
    except (Exception, SystemExit) as exc:  # a forward calling sys.exit(0) is a failure, not "no deviations"
        raise _forward_error(exc, ops, failing, input_size) from exc
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    out = first_tensor(output)
    if out is None:
        raise CnnlabError(f"the network returned a {type(output).__name__}, not a tensor of class scores")
    return ops, out


@dataclass
class Stage:
    """A weight layer and the layers after it, up to the next weight layer."""

    weight: Op
    after: list[Op]

    @property
    def kind(self) -> str:
        return self.weight.kind

    def ops(self, kind: str) -> list[Op]:
        return [op for op in self.after if op.kind == kind]

    def order(self) -> list[str]:
        """The kinds after the weight layer, in order (activation, LRN, pool, dropout, norm)."""
        return [op.kind for op in self.after if op.kind != "other"]

    @property
    def out_shape(self) -> tuple[int, ...]:
        # The last map-shaped output: a Flatten or a dropout on the flattened maps ends no stage.
        dims = len(self.weight.out_shape)
        shaped = [op for op in [self.weight, *self.after] if op.kind != "other" and len(op.out_shape) == dims]
        return shaped[-1].out_shape


def stages(ops: list[Op]) -> tuple[list[Op], list[Stage]]:
    """(layers before the first weight layer, the stages)."""
    before: list[Op] = []
    found: list[Stage] = []
    for op in ops:
        if op.kind in ("conv", "linear"):
            found.append(Stage(op, []))
        elif found:
            found[-1].after.append(op)
        else:
            before.append(op)
    return before, found
