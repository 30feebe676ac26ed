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

from cnnlab.check.reasons import FAMILY_WHY, WHY, section
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
            self.checked += 1
            if r["in"] != t["in"]:
                # Named also when it follows from a map size that departed earlier: it is the line a
                # reader's error message ("mat1 and mat2 shapes cannot be multiplied") points at.
                why = self.why("fc input")
                if self.first_shape is not None:
                    why += f"; follows from the size difference at {self.first_shape}"
                self.add(name, "fc inputs", f"{r['in']:,}", f"{t['in']:,}", "linear", why)
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

    def _each(self, name: str, aspect: str, where: str, ref: list[Op], theirs: list[Op], pair: Any) -> None:
        """Every layer of one kind in the stage, the i-th of the reference against the i-th of theirs
        (`pair`); one the other side lacks is a row of its own."""
        self.checked += 1
        for i in range(max(len(ref), len(theirs))):
            what = aspect if i == 0 else f"{aspect} {i + 1}"
            r, t = (ref[i] if i < len(ref) else None), (theirs[i] if i < len(theirs) else None)
            if r is not None and t is not None:
                pair(name if i == 0 else f"{name} ({what})", r, t)
                continue
            if i == 0:
                key = f"{where} missing" if t is None else f"{where} extra"
            else:
                key = f"{where} missing" if t is None else "second layer"
            self.add(
                name, what, r.settings() if r else "none", t.settings() if t else "none", where, self.why(key)
            )

    def _lrn(self, name: str, ref: list[Op], theirs: list[Op]) -> None:
        self._each(name, "LRN", "lrn", ref, theirs, self._lrn_pair)

    def _lrn_pair(self, name: str, ref_op: Op, their_op: Op) -> None:
        r, t = ref_op.attrs, their_op.attrs
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
        self._each(name, "pooling", "pool", ref, theirs, self._pool_pair)

    def _pool_pair(self, name: str, r: Op, t: Op) -> None:
        keys = ("op", "kernel", "stride", "padding")
        if any(r.attrs[k] != t.attrs[k] for k in keys):
            self.add(name, "pooling", _pool_text(r), _pool_text(t), "pool", self.why("pool"))

    def _dropout(self, name: str, ref: list[Op], theirs: list[Op]) -> None:
        self._each(name, "dropout", "dropout", ref, theirs, self._dropout_pair)

    def _dropout_pair(self, name: str, r: Op, t: Op) -> None:
        self.same(name, "dropout kind", r.attrs["type"], t.attrs["type"], "dropout", "dropout kind")
        self.same(name, "dropout rate", f"{r.attrs['p']:g}", f"{t.attrs['p']:g}", "dropout", "dropout rate")

    def softmax(self, ref_ops: list[Op], their_ops: list[Op]) -> None:
        """A softmax at the end of the network, which the reference leaves to the loss."""
        self.checked += 1
        last = [op for op in their_ops if op.kind not in ("other", "dropout")]
        ref_last = [op for op in ref_ops if op.kind not in ("other", "dropout")]
        if last and last[-1].kind == "softmax" and not (ref_last and ref_last[-1].kind == "softmax"):
            self.add(
                f"(output) = {last[-1].name}", "softmax", "none: logits", last[-1].settings(), "softmax",
                self.why("softmax"),
            )  # fmt: skip

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
