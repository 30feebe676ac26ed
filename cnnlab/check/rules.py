"""The comparisons `cnnlab check` makes, each with the paper's section and why the difference matters.

Stage i of the user's net is compared with stage i of the reference (convolutions with convolutions,
fully connected layers with fully connected layers): the weight layer's geometry, the map size after it
(with the size formula worked out where the sizes part), then its activation, LRN, pooling, dropout and
batch norm, and their order. Then the parameter total and, on request, the initial weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.check.record import Op, Stage
from cnnlab.counting import size_formula


@dataclass(frozen=True)
class Deviation:
    layer: str  # the reference's layer name, "= theirs" when the user's is named otherwise
    aspect: str  # what differs: "kernel", "LRN alpha", "output size", ...
    reference: str
    theirs: str
    section: str  # where the paper says so
    why: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


# The paper's section for each aspect, per family (AlexNet: Krizhevsky et al. 2012).
SECTIONS: dict[str, dict[str, str]] = {
    "alexnet": {
        "conv": "3.5, Fig. 2",
        "groups": "3.2",
        "shape": "3.5, Fig. 2",
        "lrn": "3.3",
        "pool": "3.4",
        "act": "3.1",
        "dropout": "4.2",
        "linear": "3.5",
        "params": "1, 3.5",
        "init": "5",
        "order": "3.5",
        "norm": "3.3",
    },
    "vgg": {
        "conv": "2.1, Table 1",
        "pool": "2.1",
        "act": "2.1",
        "dropout": "3.1",
        "linear": "2.1",
        "lrn": "2.1, 4.1",
        "init": "3.1",
        "params": "Table 2",
    },
    "googlenet": {"dropout": "5, Table 1", "lrn": "5 (Fig. 3)", "params": "5, Table 1"},
    "lenet": {"init": "Appendix C"},
}
DEFAULT_SECTION = {"alexnet": "3.5", "vgg": "2.1, Table 1", "googlenet": "5, Table 1", "lenet": "II.B"}


def section(family: str, aspect: str) -> str:
    found = SECTIONS.get(family, {}).get(aspect) or DEFAULT_SECTION.get(family)
    if found is None:
        return "-"
    return found if found[0].isalpha() and not found.startswith(("II", "I.")) else f"Sec. {found}"


WHY = {
    "width": "the number of maps sets this layer's capacity and the next layer's input; the paper's "
    "results and parameter count are for its widths",
    "kernel": "the receptive field; with stride and padding it sets every later map size",
    "stride": "sets every later map size: floor((in + 2*pad - kernel)/stride) + 1",
    "padding": "sets every later map size: floor((in + 2*pad - kernel)/stride) + 1",
    "groups": "groups=2 is the paper's two-GPU split (each tower reads only its own maps): it halves this "
    "layer's weights; groups=1 is the one-tower equivalent (alexnet vs alexnet_grouped)",
    "slices": "LeNet-5's C3 reads only some S2 maps (Table I) to break symmetry and save connections",
    "units": "the width of the fully connected layer; the paper's parameter count is for its sizes",
    "fc input": "the fc layer reads the flattened maps before it: another map size changes its weights",
    "lrn missing": "LRN reduced the paper's top-1/top-5 error by 1.4%/1.2% (Sec. 3.3)",
    "lrn extra": "the reference has no response normalisation here",
    "lrn size": "n is how many neighbouring maps the sum runs over; the paper's n=5 is a local "
    "neighbourhood, a large n normalises over nearly every map",
    "lrn alpha": "PyTorch's nn.LocalResponseNorm divides alpha by n: the paper's alpha=1e-4 with n=5 is "
    "alpha=5e-4 there; compared here in the paper's convention b = a / (k + alpha * sum a^2)^beta",
    "lrn beta": "the exponent of the normaliser",
    "lrn k": "the normaliser's offset: with a larger alpha*sum it decides how strong the normalisation is",
    "pool missing": "pooling sets the map sizes of every later layer",
    "pool extra": "the reference does not pool here: every later map is smaller",
    "pool": "overlapping pooling (3x3 stride 2) cut the paper's top-1/top-5 error by 0.4%/0.3% against "
    "2x2 stride 2 (Sec. 3.4); kernel and stride also set every later map size",
    "act missing": "without a nonlinearity this layer and the next collapse into one linear map; if your "
    "forward calls F.relu or torch.relu, check cannot see it: use nn.ReLU modules",
    "act extra": "the reference has no activation here",
    "act": "ReLUs trained six times faster than tanh units to 25% CIFAR-10 error (Sec. 3.1, Fig. 1)",
    "order": "the paper applies ReLU, then LRN, then max pooling; normalising before the ReLU or after "
    "the pool computes something else",
    "dropout missing": "the paper drops each unit of fc6 and fc7 with probability 0.5 at training time; "
    "without it the net overfits substantially (Sec. 4.2)",
    "dropout extra": "the reference has no dropout here: it changes what is regularised",
    "dropout kind": "Dropout2d zeroes whole channels of conv maps; on fc outputs ([N, F]) PyTorch warns it "
    "is deprecated and will become an error; the paper drops single units: nn.Dropout",
    "dropout rate": "the paper drops each hidden unit with probability 0.5 (Sec. 4.2)",
    "norm missing": "the reference uses batch norm here",
    "norm extra": "the paper predates batch norm (2015): the reference has none here",
    "missing layer": "a layer of the reference has no counterpart in yours",
    "extra layer": "your network has a layer the reference does not",
    "params": "the paper's parameter count; the difference says how many weights your layers add or lack",
    "init std": "the paper draws weights from N(0, 0.01) (Sec. 5); another scale changes how fast (and "
    "whether) training starts",
    "init bias": "the paper sets the biases of conv2, conv4, conv5, fc6 and fc7 to 1 'to provide the "
    "ReLUs with positive inputs', the others to 0 (Sec. 5)",
}


# Where the AlexNet reasons above do not apply, each family's own (keys missing here fall back to WHY).
FAMILY_WHY: dict[str, dict[str, str]] = {
    "lenet": {
        "act": "LeNet-5 squashes with f(a) = 1.7159 tanh(2a/3), so targets of +-1 sit where f still bends "
        "(Appendix A); another function changes what every unit computes",
        "pool": "LeNet-5's subsampling units average 2x2, scale by a trainable coefficient and add a bias "
        "per map (Sec. II.B); a fixed pool learns nothing there",
        "pool missing": "LeNet-5 halves the maps after C1 and C3 (S2, S4): every later size follows",
        "init std": "the paper draws weights uniformly in +-2.4/F, F the fan-in (Appendix C)",
        "init bias": "the paper draws biases like the weights, uniformly in +-2.4/F (Appendix C)",
        "dropout extra": "LeNet-5 (1998) has no dropout",
        "lrn extra": "LeNet-5 has no response normalisation",
        "order": "the paper's order within a stage is convolution, squashing, subsampling",
        "params": "LeNet-5 has 60,850 trainable parameters with a linear output (60,000 with the RBF units)",
    },
    "vgg": {
        "act": "VGG applies ReLU after every convolution and hidden fc layer (Sec. 2.1)",
        "pool": "VGG max-pools 2x2 with stride 2 after each block (Sec. 2.1): it sets every later map size",
        "init std": "VGG Sec. 3.1 draws weights with zero mean and variance 10^-2 (std 0.1)",
        "init bias": "VGG Sec. 3.1 sets the biases to 0",
        "order": "VGG applies ReLU right after each convolution (Sec. 2.1)",
    },
    "googlenet": {
        "act": "GoogLeNet uses ReLU in every convolution, inside the Inception modules too (Sec. 5)",
        "pool": "pooling windows and strides set every later map size (Table 1)",
        "order": "the layer order inside GoogLeNet's stem and modules follows Table 1 and Fig. 3",
    },
}


def label(ref: Op | None, theirs: Op | None) -> str:
    """The reference's short layer name (conv1, fc6), with theirs when it is named otherwise."""

    def short(op: Op) -> str:
        last = op.name.rsplit(".", 1)[-1]
        return op.name if last.isdigit() else last

    if ref is None:
        return f"(none) = {theirs.name}" if theirs else "?"
    if theirs is None or theirs.name == ref.name or short(theirs) == short(ref):
        return short(ref)
    return f"{short(ref)} = {theirs.name}"


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _formula(op: Op) -> str | None:
    """The worked output-size formula of a conv or fixed-window pool, for its input height."""
    a = op.attrs
    if op.kind not in ("conv", "pool") or a.get("stride") is None or len(op.in_shape) < 3:
        return None
    k, s, p = a["kernel"][0], a["stride"][0], a["padding"][0]
    return size_formula(int(op.in_shape[-2]), k, s, max(p, 0))[0]


class Comparison:
    """Collects deviations for one reference/theirs pair of stage lists."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.found: list[Deviation] = []
        self.checked = 0
        self.first_shape: str | None = None  # the first layer whose map size departs

    def why(self, key: str) -> str:
        return FAMILY_WHY.get(self.family, {}).get(key) or WHY[key]

    def add(self, layer: str, aspect: str, ref: Any, theirs: Any, where: str, why: str) -> None:
        self.found.append(Deviation(layer, aspect, str(ref), str(theirs), section(self.family, where), why))

    def same(self, layer: str, aspect: str, ref: Any, theirs: Any, where: str, why_key: str) -> bool:
        self.checked += 1
        if ref == theirs:
            return True
        self.add(layer, aspect, _show(ref), _show(theirs), where, self.why(why_key))
        return False

    # ----------------------------------------------------------------------------------------- stages

    def stage(self, ref: Stage, theirs: Stage) -> None:
        name = label(ref.weight, theirs.weight)
        r, t = ref.weight.attrs, theirs.weight.attrs
        if ref.kind == "conv":
            self.same(name, "conv width", r["out"], t["out"], "conv", "width")
            self.same(name, "kernel", _hw(r["kernel"]), _hw(t["kernel"]), "conv", "kernel")
            self.same(name, "stride", r["stride"][0], t["stride"][0], "conv", "stride")
            self.same(name, "padding", r["padding"][0], t["padding"][0], "conv", "padding")
            self.same(name, "groups", r["groups"], t["groups"], "groups", "groups")
            if r.get("slices") or t.get("slices"):
                full = "all input maps"
                self.same(
                    name, "input slices", r.get("slices") or full, t.get("slices") or full, "conv", "slices"
                )
        else:
            self.same(name, "units", r["out"], t["out"], "linear", "units")
            if r["in"] != t["in"] and self.first_shape is None:
                self.same(name, "fc inputs", r["in"], t["in"], "linear", "fc input")
        self.shapes(name, ref, theirs)
        self.after(name, ref, theirs)

    def shapes(self, name: str, ref: Stage, theirs: Stage) -> None:
        """Map size after the conv, else after the stage (its pool); the first departure gets its formula.

        Only the spatial size is compared here: another number of maps is the "conv width" row.
        """
        if ref.kind != "conv":
            return
        self.checked += 1
        for what, r_shape, t_shape in (
            ("output size", ref.weight.out_shape, theirs.weight.out_shape),
            ("stage output", ref.out_shape, theirs.out_shape),
        ):
            if r_shape[1:] == t_shape[1:]:
                continue
            if self.first_shape is not None:
                why = f"follows from the size difference at {self.first_shape}"
            else:
                self.first_shape = name
                why = self._shape_why(ref, theirs, what == "output size")
            self.add(name, what, _dims(r_shape), _dims(t_shape), "shape", why)
            return  # the stage output inherits the conv's difference: said once

    def _shape_why(self, ref: Stage, theirs: Stage, at_weight: bool) -> str:
        if ref.weight.in_shape[1:] != theirs.weight.in_shape[1:]:
            return f"the input sizes differ ({_dims(ref.weight.in_shape)} vs {_dims(theirs.weight.in_shape)})"
        pairs = (
            [(ref.weight, theirs.weight)]
            if at_weight
            else list(zip(ref.ops("pool"), theirs.ops("pool"), strict=False))
        )
        for r_op, t_op in pairs:
            r_f, t_f = _formula(r_op), _formula(t_op)
            if r_f and t_f and r_f != t_f:
                return f"yours: {t_f}; reference: {r_f}; every later map size follows"
        return "every later layer sees maps of another size"

    def after(self, name: str, ref: Stage, theirs: Stage) -> None:
        r_act = [op.attrs["fn"] for op in ref.ops("act")]
        t_act = [op.attrs["fn"] for op in theirs.ops("act")]
        self.checked += 1
        if r_act != t_act:
            key = "act missing" if not t_act else "act extra" if not r_act else "act"
            self.add(
                name, "activation", " ".join(r_act) or "none", " ".join(t_act) or "none", "act", self.why(key)
            )
        self._lrn(name, ref.ops("lrn"), theirs.ops("lrn"))
        self._pool(name, ref.ops("pool"), theirs.ops("pool"))
        self._dropout(name, ref.ops("dropout"), theirs.ops("dropout"))
        r_norm, t_norm = [o.type for o in ref.ops("norm")], [o.type for o in theirs.ops("norm")]
        self.checked += 1
        if r_norm != t_norm:
            key = "norm extra" if t_norm and not r_norm else "norm missing"
            self.add(
                name,
                "normalisation",
                " ".join(r_norm) or "none",
                " ".join(t_norm) or "none",
                "norm",
                self.why(key),
            )
        r_order, t_order = _order(ref), _order(theirs)
        self.checked += 1
        if sorted(r_order) == sorted(t_order) and r_order != t_order:
            self.add(name, "order", " -> ".join(r_order), " -> ".join(t_order), "order", self.why("order"))

    def _lrn(self, name: str, ref: list[Op], theirs: list[Op]) -> None:
        self.checked += 1
        if not ref and not theirs:
            return
        if not theirs or not ref:
            key = "lrn missing" if not theirs else "lrn extra"
            self.add(
                name,
                "LRN",
                ref[0].settings() if ref else "none",
                theirs[0].settings() if theirs else "none",
                "lrn",
                self.why(key),
            )
            return
        r, t = ref[0].attrs, theirs[0].attrs
        self.same(name, "LRN size n", r["size"], t["size"], "lrn", "lrn size")
        self.checked += 1
        if not math.isclose(r["alpha"], t["alpha"], rel_tol=1e-6):
            theirs_text = f"{t['alpha']:.3g}"
            why = self.why("lrn alpha")
            if t["torch_convention"]:
                theirs_text += f" (nn.LocalResponseNorm alpha={t['given_alpha']:g} / n={t['size']})"
                wanted = r["alpha"] * t["size"]
                why += f"; with your n={t['size']} the paper's alpha is alpha={wanted:.3g} there"
            ref_text = (
                f"{r['alpha']:g} (nn.LocalResponseNorm alpha={r['alpha'] * r['size']:g} with n={r['size']})"
            )
            self.add(name, "LRN alpha (paper's)", ref_text, theirs_text, "lrn", why)
        for key in ("beta", "k"):
            self.checked += 1
            if not math.isclose(r[key], t[key], rel_tol=1e-6):
                self.add(name, f"LRN {key}", f"{r[key]:g}", f"{t[key]:g}", "lrn", self.why(f"lrn {key}"))

    def _pool(self, name: str, ref: list[Op], theirs: list[Op]) -> None:
        self.checked += 1
        if not ref and not theirs:
            return
        if not theirs or not ref:
            key = "pool missing" if not theirs else "pool extra"
            self.add(
                name,
                "pooling",
                ref[0].settings() if ref else "none",
                theirs[0].settings() if theirs else "none",
                "pool",
                self.why(key),
            )
            return
        r, t = ref[0], theirs[0]
        keys = ("op", "kernel", "stride", "padding")
        if any(r.attrs[k] != t.attrs[k] for k in keys):
            self.add(name, "pooling", _pool_text(r), _pool_text(t), "pool", self.why("pool"))

    def _dropout(self, name: str, ref: list[Op], theirs: list[Op]) -> None:
        self.checked += 1
        if not ref and not theirs:
            return
        if not theirs or not ref:
            key = "dropout missing" if not theirs else "dropout extra"
            self.add(
                name,
                "dropout",
                ref[0].settings() if ref else "none",
                theirs[0].settings() if theirs else "none",
                "dropout",
                self.why(key),
            )
            return
        r, t = ref[0], theirs[0]
        self.same(name, "dropout kind", r.type, t.type, "dropout", "dropout kind")
        self.same(name, "dropout rate", f"{r.attrs['p']:g}", f"{t.attrs['p']:g}", "dropout", "dropout rate")

    # ---------------------------------------------------------------------------------------- the rest

    def unmatched(self, ref: list[Stage], theirs: list[Stage]) -> None:
        for s in ref[len(theirs) :]:
            self.add(
                label(s.weight, None),
                "missing layer",
                s.weight.settings(),
                "none",
                s.kind,
                self.why("missing layer"),
            )
        for s in theirs[len(ref) :]:
            self.add(
                label(None, s.weight),
                "extra layer",
                "none",
                s.weight.settings(),
                s.kind,
                self.why("extra layer"),
            )
        self.checked += 1

    def params(self, ref_total: int, their_total: int) -> None:
        self.checked += 1
        if ref_total != their_total:
            diff = their_total - ref_total
            theirs = f"{their_total:,} ({diff:+,}, {diff / ref_total:+.1%})"
            self.add("total", "parameters", f"{ref_total:,}", theirs, "params", self.why("params"))

    def init(self, ref: Stage, theirs: Stage) -> None:
        """The initial weight std and bias of one weight layer (the paper's, measured on the reference)."""
        name = label(ref.weight, theirs.weight)
        r_std, r_bias, _ = _weight_stats(ref.weight.module)
        t_std, t_bias, t_bias_std = _weight_stats(theirs.weight.module)
        self.checked += 2
        if r_std is not None and t_std is not None and not math.isclose(r_std, t_std, rel_tol=0.25):
            self.add(name, "init weight std", f"{r_std:.2g}", f"{t_std:.3g}", "init", self.why("init std"))
        if r_bias is not None and (t_bias is None or abs(r_bias - t_bias) > 0.05 or (t_bias_std or 0) > 0.05):
            theirs_text = "no bias" if t_bias is None else f"{t_bias:.3g} +- {t_bias_std:.2g}"
            self.add(name, "init bias", f"{r_bias:g}", theirs_text, "init", self.why("init bias"))


def _hw(k: tuple[int, int]) -> str:
    return f"{k[0]}x{k[1]}"


def _show(value: Any) -> str:
    return str(value)


def _pool_text(op: Op) -> str:
    a = op.attrs
    if a["stride"] is None:
        return op.settings()
    overlap = " (overlapping)" if a["kernel"][0] > a["stride"][0] else ""
    pad = f" pad {a['padding'][0]}" if a["padding"] and a["padding"][0] else ""
    return f"{a['op']} {_hw(a['kernel'])}/{a['stride'][0]}{pad}{overlap}"


_SHORT = {"lrn": "LRN", "pool": "pool", "dropout": "dropout", "norm": "BN"}


def _order(stage: Stage) -> list[str]:
    return [
        op.attrs["fn"] if op.kind == "act" else _SHORT.get(op.kind, op.kind)
        for op in stage.after
        if op.kind != "other"
    ]


def _weight_stats(module: nn.Module | None) -> tuple[float | None, float | None, float | None]:
    """(weight std, bias mean, bias std) of a conv or linear layer's current values."""
    if module is None:
        return None, None, None
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    if not isinstance(weight, torch.Tensor) or weight.device.type == "meta":
        return None, None, None
    w_std = float(weight.detach().float().std())
    if not isinstance(bias, torch.Tensor):
        return w_std, None, None
    b = bias.detach().float()
    return w_std, float(b.mean()), float(b.std()) if b.numel() > 1 else 0.0
