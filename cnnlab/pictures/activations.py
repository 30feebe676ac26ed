"""`cnnlab activations`: what each layer computes for one image (Zeiler & Fergus 2014, Sec. 2-4).

One row per layer, labelled with its name and shape (`conv2 256x27x27`, channels x height x width): the
layer's k most active feature maps, ranked by their mean activation over the map, on one colour scale per
row (so a map's brightness compares with its row's others) with that row's colour bar. The first row is
the image as the net saw it (its preprocessed centre view) and what the net predicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.pictures import common
from cnnlab.pictures.layers import Stage, catch, feature_stages, joined, pick


@dataclass
class LayerMaps:
    name: str
    maps: torch.Tensor  # [C, h, w] the layer's rectified output for the image, on the CPU
    top: list[int]  # channels of the most active maps, most active first

    @property
    def shape_text(self) -> str:
        return "x".join(str(int(d)) for d in self.maps.shape)


@torch.no_grad()
def layer_maps(model: nn.Module, x: torch.Tensor, stages: Sequence[Stage], top: int) -> list[LayerMaps]:
    """Each stage's maps for the single image x [1, C, H, W], with its `top` most active channels."""
    if x.shape[0] != 1:
        raise ValueError("layer_maps takes one image")
    with catch(stages) as caught:
        model(x)
    out = []
    for s in stages:
        maps = joined(caught[s.name])[0].float().cpu()
        order = maps.mean(dim=(1, 2)).argsort(descending=True)
        out.append(LayerMaps(s.name, maps, order[: min(top, maps.shape[0])].tolist()))
    return out


def figure(
    layers: Sequence[LayerMaps], picture: Any, title: str, caption: str, top: int
) -> Any:  # matplotlib Figure
    plt = common.pyplot()
    cols = max(top, 1)
    rows = len(layers) + 1
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.25 * cols + 1.2, 1.35 * rows + 0.6), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.set_axis_off()
    first = axes[0, 0]
    common.show_image(first, picture)
    first.set_axis_on()
    first.set_ylabel("input", fontsize=9)
    note = first.text(1.1, 0.5, caption, fontsize=10, va="center", ha="left", transform=first.transAxes)
    note.set_in_layout(False)  # free to run over the empty cells beside the image
    for r, layer in enumerate(layers, start=1):
        chosen = layer.maps[layer.top]
        lo, hi = min(0.0, float(chosen.min())), max(float(chosen.max()), 1e-6)
        shown = None
        for c, channel in enumerate(layer.top):
            ax = axes[r, c]
            ax.set_axis_on()
            shown = ax.imshow(layer.maps[channel].numpy(), cmap="viridis", vmin=lo, vmax=hi,
                              interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"map {channel}", fontsize=7, pad=2)
        axes[r, 0].set_ylabel(f"{layer.name}\n{layer.shape_text}", fontsize=9)
        if shown is not None:
            fig.colorbar(shown, ax=list(axes[r, :]), fraction=0.02, pad=0.01, label="activation")
    fig.suptitle(title, fontsize=11)
    return fig


def write_activations(
    subject: common.Subject,
    image: str,
    out: str | Path,
    layers: Sequence[str] | None = None,
    top: int = 8,
    outputs: Any = None,
) -> tuple[Path, list[LayerMaps]]:
    """The picture for one image file; returns its path and the maps drawn (`outputs`: the rule for
    replacing files, `common.check_png`)."""
    if top < 1:
        raise CnnlabError(f"--top {top} must be at least 1")
    out = common.check_png(out, outputs)
    stages = pick(feature_stages(subject.model), layers)
    x, pictures = subject.from_files([image])
    found = layer_maps(subject.model, x, stages, top)
    top = min(top, max((len(layer.top) for layer in found), default=1))  # no more columns than maps
    with torch.no_grad():
        probs = torch.softmax(subject.model(x).float(), dim=1)[0].cpu()
    best = int(probs.argmax())
    caption = f"predicted: {subject.classes[best]} ({common.percent(float(probs[best]))})"
    title = f"{subject.name}: the {top} most active feature maps per layer for {Path(image).name}"
    fig = figure(found, pictures[0], title, caption, top)
    return common.save_figure(fig, out, outputs=outputs), found
