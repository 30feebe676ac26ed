"""Which tensors are a net's feature maps, by the papers' layer names, and how to catch them in a forward
pass.

A layer's feature maps are its rectified output: for `conv2` the output of the activation after it (after
batch norm where there is one), the maps Zeiler & Fergus (2014) look at and Grad-CAM weighs. Per family:

- AlexNet variants and VGG: every convolution of `features`, named as the model's layer table names it
  (conv1 ... conv5; conv1_1 ... conv5_3); the map is the output of the activation (or the block holding it)
  that follows the convolution.
- alexnet_parallel: the same names; each layer's maps are both towers' outputs joined on the channel axis,
  tower A's first, the order `alexnet_grouped` keeps them in.
- GoogLeNet: the stem's conv1, conv2 and conv3, then each Inception module's joined output (inception3a ...
  inception5b).

The last one is the last convolutional stage, Grad-CAM's default layer (Selvaraju et al. 2017, Sec. 3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import layers as L
from cnnlab.models.alexnet_parallel import AlexNetParallel
from cnnlab.models.googlenet import GoogLeNet

ACTIVATION_TYPES = tuple(factory for factory, _, _ in L.ACTIVATIONS.values())


@dataclass(frozen=True)
class Stage:
    """One layer's feature maps: the outputs of `modules`, joined on channels (several only for towers)."""

    name: str
    modules: tuple[nn.Module, ...]


def _has_activation(m: nn.Module) -> bool:
    return isinstance(m, ACTIVATION_TYPES) or any(isinstance(c, ACTIVATION_TYPES) for c in m.modules())


def _sequential_stages(seq: nn.Module, names: dict[int, str]) -> list[tuple[str, nn.Module]]:
    """(conv name, the module whose output is its rectified map) for each conv among `seq`'s children.

    A conv is named by `names`, else by its key in `seq` (AlexNet's keys are the paper's names).
    """
    found: list[tuple[str, nn.Module]] = []
    pending: str | None = None
    for key, child in seq.named_children():
        if isinstance(child, nn.Conv2d):
            pending = names.get(id(child), key)
        elif pending is not None and _has_activation(child):
            found.append((pending, child))
            pending = None
    return found


def _table_names(model: nn.Module) -> dict[int, str]:
    """conv module -> its paper name, from the model's own layer list ("conv1_1 (features.0)" -> conv1_1)."""
    spatial = getattr(model, "spatial_layers", None)
    if spatial is None:
        return {}
    return {id(m): name.split(" ")[0] for name, m in spatial()}


def feature_stages(model: nn.Module) -> list[Stage]:
    """The net's feature-map layers in forward order (see the module docstring)."""
    if isinstance(model, GoogLeNet):
        stem = [Stage(n, (getattr(model, n),)) for n in ("conv1", "conv2", "conv3")]
        blocks = [
            Stage(n, (m,)) for n, m in model.named_children() if n.startswith("inception")
        ]  # registration order is forward order: 3a, 3b, 4a ... 5b
        return stem + blocks
    if isinstance(model, AlexNetParallel):
        stages = []
        for part in ("stage1", "stage2"):
            a = _sequential_stages(getattr(model.tower_a, part), {})
            b = _sequential_stages(getattr(model.tower_b, part), {})
            stages += [Stage(name, (ma, mb)) for (name, ma), (_, mb) in zip(a, b, strict=True)]
        return stages
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        return [Stage(n, (m,)) for n, m in _sequential_stages(features, _table_names(model))]
    raise CnnlabError(f"no feature-map layers known for {type(model).__name__}")


def pick(stages: Sequence[Stage], wanted: Sequence[str] | None) -> list[Stage]:
    """The stages named in `wanted` (all when None), in the order given; unknown names are a CnnlabError."""
    if not wanted:
        return list(stages)
    by_name = {s.name: s for s in stages}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise CnnlabError(
            f"layer {', '.join(unknown)} is not a feature-map layer of this net; "
            f"choose from {', '.join(by_name)}"
        )
    return [by_name[w] for w in wanted]


def layer_list(text: str | None) -> list[str] | None:
    """'conv1, conv2' -> ['conv1', 'conv2'] (None or empty: every layer)."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    return names or None


@contextlib.contextmanager
def catch(stages: Sequence[Stage], detach: bool = True) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record each stage's module outputs during the forward passes inside the block.

    With `detach` the outputs are copied off the graph (a later in-place layer cannot change them); without
    it they stay the graph's own tensors, for gradients (Grad-CAM). `joined` concatenates a stage's parts.
    """
    caught: dict[str, list[torch.Tensor]] = {s.name: [] for s in stages}
    handles = []
    for s in stages:
        for m in s.modules:

            def hook(_m: nn.Module, _args: object, out: torch.Tensor, name: str = s.name) -> None:
                caught[name].append(out.detach().clone() if detach else out)

            handles.append(m.register_forward_hook(hook))
    try:
        yield caught
    finally:
        for h in handles:
            h.remove()


def joined(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """One stage's maps: the towers' parts side by side on the channel axis, on the first part's device."""
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p.to(parts[0].device) for p in parts], dim=1)
