"""What a network really does: one forward pass with hooks, every leaf layer call in order, grouped in stages.

A stage is a weight layer (convolution or fully connected) with the layers that follow it up to the next
weight layer: its activation, normalisation, pooling and dropout. Stages are what the papers' tables list
("conv1: 96 filters 11x11 stride 4, ReLU, LRN, max-pool"), so `cnnlab check` aligns two networks stage by
stage: the n-th convolution of one with the n-th of the other, the n-th fc layer with the n-th.

Only modules are seen: a forward that calls `F.relu` or `F.max_pool2d` directly shows no layer there (the
deviation says so). Layers a module calls more than once (one `nn.ReLU` shared by every conv) get one row
per call.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.counting import is_lrn, pair
from cnnlab.errors import CnnlabError

# Activation modules by class name -> the name the papers and our switches use.
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
    if isinstance(m, nn.Conv2d):
        attrs = {
            "out": m.out_channels,
            "kernel": pair(m.kernel_size),
            "stride": pair(m.stride),
            "padding": pair(m.padding) if not isinstance(m.padding, str) else (-1, -1),
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
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        op = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        if op == "avg" and any(True for _ in m.parameters(recurse=False)):
            op = "trainable"  # LeNet-5's subsampling: average x coefficient + bias
        k = pair(m.kernel_size)
        s = pair(m.stride if m.stride is not None else m.kernel_size)
        return "pool", {"op": op, "kernel": k, "stride": s, "padding": pair(m.padding)}
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
    return "other", {}


def _tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    return None


def record(model: nn.Module, input_size: tuple[int, int, int]) -> tuple[list[Op], torch.Tensor]:
    """Every leaf layer call of one eval-mode forward on zeros of `input_size`, and the output."""
    ops: list[Op] = []
    seen: set[int] = set()

    def hook(name: str, m: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        inp, out = _tensor(args), _tensor(output)
        if inp is None or out is None:
            return
        kind, attrs = _classify(m, inp, out)
        params = 0
        if id(m) not in seen:  # a layer called twice counts its parameters once
            seen.add(id(m))
            params = sum(p.numel() for p in m.parameters(recurse=False))
        shape_in, shape_out = tuple(inp.shape[1:]), tuple(out.shape[1:])
        ops.append(Op(name, kind, type(m).__name__, attrs, params, shape_in, shape_out, m))

    handles = [
        m.register_forward_hook(lambda mod, a, o, name=name: hook(name, mod, a, o))
        for name, m in model.named_modules()
        if name and not any(m.children())
    ]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dropout2d on fc outputs warns; check reports it instead
            output = model(torch.zeros(1, *input_size, device=device))
    except CnnlabError:
        raise
    except (Exception, SystemExit) as exc:  # a forward calling sys.exit(0) is a failure, not "no deviations"
        after = f" after layer {ops[-1].name} ({'x'.join(map(str, ops[-1].out_shape))})" if ops else ""
        text = " ".join(str(exc).split()) or type(exc).__name__
        size = "x".join(map(str, input_size))
        raise CnnlabError(
            f"the forward pass on a {size} input failed{after}: {type(exc).__name__}: {text}; "
            "give the input your network expects with --input-size"
        ) from exc
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    out = _tensor(output)
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
