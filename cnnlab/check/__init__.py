"""`cnnlab check`: hold your own network against the paper's, layer by layer.

The target is the user's network in Python: `path/to/file.py:ClassOrFunction` or `package.module:attr`,
built with `--kwargs`. Importing it runs the user's code, by design (it is their own file, named on their
own command line); `check` never loads checkpoint, pickle or TorchScript files, which it refuses by suffix.
Both nets run one forward pass on zeros of the reference's input size with hooks on every leaf layer
(`record`), are cut into stages and compared stage by stage (`rules`). Exit status: 0 when nothing
deviates, 1 when something does, 2 on a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cnnlab import models
from cnnlab.check.record import Op, record, stages
from cnnlab.check.rules import Comparison, Deviation
from cnnlab.errors import CnnlabError
from cnnlab.models.user import is_user_spec, load_user_model
from cnnlab.summary import default_input_size, render

# Files that hold weights or compiled code: check reads networks from Python source only.
_NOT_SOURCE = (".pt", ".pth", ".ts", ".ckpt", ".bin", ".pkl", ".pickle", ".safetensors", ".onnx")


@dataclass
class Report:
    target: str
    reference: str
    input_size: tuple[int, int, int]
    num_classes: int
    ref_params: int
    their_params: int
    checked: int
    deviations: list[Deviation]
    ref_layers: list[Op] = field(repr=False)
    their_layers: list[Op] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        def layers(ops: list[Op]) -> list[dict[str, Any]]:
            return [
                {
                    "name": o.name,
                    "kind": o.kind,
                    "type": o.type,
                    "settings": o.settings(),
                    "params": o.params,
                    "output": list(o.out_shape),
                }
                for o in ops
                if o.kind != "other"
            ]

        return {
            "target": self.target,
            "reference": self.reference,
            "input_size": list(self.input_size),
            "num_classes": self.num_classes,
            "parameters": {"reference": self.ref_params, "theirs": self.their_params},
            "checked": self.checked,
            "deviations": [d.as_dict() for d in self.deviations],
            "layers": {"reference": layers(self.ref_layers), "theirs": layers(self.their_layers)},
        }


def load_target(target: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The user's network from `file.py:Name` or `pkg.mod:attr` (their code runs); weight files refused."""
    where = target.rpartition(":")[0] or target
    if target.lower().endswith(_NOT_SOURCE) or where.lower().endswith(_NOT_SOURCE):
        raise CnnlabError(
            f"{target}: check reads networks from Python source, never from weight, pickle or TorchScript "
            "files; give path/to/file.py:ClassName (the class that builds your network)"
        )
    if not is_user_spec(target):
        raise CnnlabError(
            f"{target!r} is not a network: give path/to/file.py:ClassName or package.module:attr"
        )
    return load_user_model(target, **(kwargs or {}))


def _reference(name: str, num_classes: int, size: tuple[int, int, int], init: bool) -> nn.Module:
    """The zoo model at the user's class count and input; its paper init when `init`, else on meta."""
    import torch

    info = models.info(name)
    options: dict[str, Any] = {}
    if "input_size" in info.switches and size[-1] != info.input_size:
        try:  # the paper nets pad conv1 for 224 inputs: compare with that, not with a 54x54 reference
            with torch.device("meta"):
                models.create(name, num_classes, size[0], input_size=size[-1])
            options["input_size"] = size[-1]
        except CnnlabError:
            pass
    if init:
        if info.switches.get("init") is None:
            raise CnnlabError(f"--init: {name} has no paper initialisation to compare with")
        options["init"] = "paper"
        return models.create(name, num_classes, size[0], **options)
    with torch.device("meta"):
        return models.create(name, num_classes, size[0], **options)


def check(
    model: nn.Module,
    against: str,
    input_size: tuple[int, int, int] | None = None,
    *,
    num_classes: int | None = None,
    init: bool = False,
    target: str = "your network",
) -> Report:
    """Compare `model` with zoo model `against`; the deviations, each with the paper's section and why."""
    info = models.info(against)
    size = input_size or default_input_size(against)
    their_ops, out = record(model, size)
    classes = num_classes or (int(out.shape[-1]) if out.dim() == 2 else 1000)
    ref_model = _reference(against, classes, size, init)
    ref_ops, _ = record(ref_model, size)
    _, ref_stages = stages(ref_ops)
    _, their_stages = stages(their_ops)
    cmp = Comparison(info.family)
    for kind in ("conv", "linear"):
        ref_k = [s for s in ref_stages if s.kind == kind]
        their_k = [s for s in their_stages if s.kind == kind]
        for r, t in zip(ref_k, their_k, strict=False):
            cmp.stage(r, t)
            if init:
                cmp.init(r, t)
        cmp.unmatched(ref_k, their_k)
    cmp.softmax(ref_ops, their_ops)
    ref_params = sum(p.numel() for p in ref_model.parameters())
    their_params = sum(p.numel() for p in model.parameters())
    cmp.params(ref_params, their_params)
    return Report(
        target, against, size, classes, ref_params, their_params, cmp.checked, cmp.found, ref_ops, their_ops
    )


def format_report(report: Report) -> str:
    size = "x".join(map(str, report.input_size))
    head = (
        f"{report.target} against {report.reference} ({size} input, {report.num_classes} classes): "
        f"{report.checked} checks"
    )
    if not report.deviations:
        return f"{head}, no deviation: your network matches {report.reference}."
    body = [[d.layer, d.aspect, d.reference, d.theirs, d.section, d.why] for d in report.deviations]
    table = render(["layer", "what", "reference", "yours", "paper", "why it matters"], body, right=set())
    n = len(report.deviations)
    return f"{head}, {n} deviation{'s' if n > 1 else ''}:\n{table}"


__all__ = ["Deviation", "Report", "check", "format_report", "load_target"]
