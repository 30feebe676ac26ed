"""`cnnlab occlusion`: Zeiler & Fergus's occlusion sensitivity (ECCV 2014, Sec. 4.2 and Figure 7).

A grey square slides over the image; at each position the net classifies the occluded copy, and the map
records the probability of the class in question (the chosen one, else the net's prediction for the whole
image). Where the probability falls, the net was using what the square hides. The grey is the data's mean,
i.e. zero after the run's normalisation (the mean pixel under "channel", the mean image under "pixel",
black under "none"): the patch adds no signal of its own. Every position's copy is made on the device and
classified in batches.

The picture gives each pixel the mean probability over the square positions that cover it (each pixel is
covered: the last row and column of positions sit flush with the far edges), overlaid on the image, with
the position that lowers the probability most outlined.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.pictures import common


@dataclass
class Occlusion:
    target: int  # the class whose probability is mapped
    base_prob: float  # its probability on the whole image
    tops: list[int]  # square positions (top row, left column of each)
    lefts: list[int]
    grid: torch.Tensor  # [len(tops), len(lefts)] probability with the square at each position
    pixel: torch.Tensor  # [H, W] mean probability over the positions covering each pixel
    patch: int

    def lowest(self) -> tuple[int, int, float]:
        """(top, left, probability) of the position that lowers the probability most."""
        flat = int(self.grid.argmin())
        i, j = divmod(flat, self.grid.shape[1])
        return self.tops[i], self.lefts[j], float(self.grid[i, j])


def positions(side: int, patch: int, stride: int) -> list[int]:
    """Offsets 0, stride, ... and one flush with the far edge, so the squares cover every pixel."""
    if patch < 1 or stride < 1:
        raise CnnlabError(f"--patch {patch} and --stride {stride} must be at least 1")
    if patch > side:
        raise CnnlabError(f"--patch {patch} is larger than the {side}-px input; use a smaller square")
    out = list(range(0, side - patch + 1, stride))
    if out[-1] != side - patch:
        out.append(side - patch)
    return out


@torch.no_grad()
def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: int | None = None,
    patch: int = 8,
    stride: int = 4,
    batch_size: int = 256,
) -> Occlusion:
    """The occlusion map of the normalised image x [1, C, H, W] for class `target` (None: predicted)."""
    if x.shape[0] != 1:
        raise ValueError("occlusion takes one image")
    _, _, H, W = x.shape
    probs = torch.softmax(model(x).float(), dim=1)[0]
    cls = int(probs.argmax()) if target is None else target
    tops, lefts = positions(H, patch, stride), positions(W, patch, stride)
    places = [(t, l) for t in tops for l in lefts]
    rows = torch.arange(H, device=x.device)
    cols = torch.arange(W, device=x.device)
    found = []
    for start in range(0, len(places), batch_size):
        part = torch.tensor(places[start : start + batch_size], device=x.device)
        pt, pl = part[:, 0, None], part[:, 1, None]
        inside_r = (rows >= pt) & (rows < pt + patch)  # [n, H]
        inside_c = (cols >= pl) & (cols < pl + patch)  # [n, W]
        mask = inside_r[:, None, :, None] & inside_c[:, None, None, :]  # [n, 1, H, W]
        occluded = x.masked_fill(mask, 0.0)  # zero = the normalised mean
        found.append(torch.softmax(model(occluded).float(), dim=1)[:, cls])
    grid = torch.cat(found).view(len(tops), len(lefts)).cpu()
    total = torch.zeros(H, W)
    count = torch.zeros(H, W)
    for i, t in enumerate(tops):
        for j, l in enumerate(lefts):
            total[t : t + patch, l : l + patch] += grid[i, j]
            count[t : t + patch, l : l + patch] += 1
    return Occlusion(cls, float(probs[cls]), tops, lefts, grid, total / count, patch)


def colour_range(found: Occlusion) -> tuple[float, float, float]:
    """(low, centre, high) of the colour scale: centred on the unoccluded probability and reaching as far
    each way as the largest change the squares made (kept within [0, 1]), so the strongest effect is the
    deepest colour. A 0-1 scale left a 0.90 -> 0.67 effect near white."""
    centre = min(max(found.base_prob, 1e-3), 1 - 1e-3)
    span = float((found.pixel - found.base_prob).abs().max()) if found.pixel.numel() else 0.0
    span = max(span, 1e-3)  # no effect at all: a faint scale, not a zero-width one
    return max(0.0, centre - span), centre, min(1.0, centre + span)


def figure(found: Occlusion, picture: Any, classes: list[str], title: str) -> Any:
    """The image, the map alone and the map over the image: white where the square leaves the probability
    as it was, red where it lowers it, blue where it raises it (a diverging scale centred on the
    unoccluded probability, fitted to the largest change). The square position that lowers it most is
    outlined."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    plt = common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 4.4), layout="constrained")
    common.show_image(axes[0], picture, "input (as the net sees it)")
    low_end, centre, high_end = colour_range(found)
    norm = TwoSlopeNorm(vcenter=centre, vmin=min(low_end, centre - 1e-6), vmax=max(high_end, centre + 1e-6))
    name = classes[found.target]
    alone = axes[1].imshow(found.pixel.numpy(), cmap="RdBu", norm=norm, interpolation="nearest")
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    axes[1].set_title(f"p({name}), the square over each pixel", fontsize=9)
    common.overlay(axes[2], picture, found.pixel.numpy(), "RdBu", norm)
    top, lft, low = found.lowest()
    axes[2].add_patch(Rectangle((lft - 0.5, top - 0.5), found.patch, found.patch, fill=False, lw=2,
                                edgecolor="black", linestyle="--"))  # fmt: skip
    axes[2].set_title(f"overlaid; dashed: the most harmful square ({common.percent(low)})", fontsize=9)
    bar = fig.colorbar(alone, ax=list(axes[1:]), fraction=0.03, pad=0.02,
                       label=f"probability of {name} (line: unoccluded)")  # fmt: skip
    bar.ax.axhline(found.base_prob, color="black", lw=2)
    fig.suptitle(title, fontsize=11)
    return fig


def write_occlusion(
    subject: common.Subject,
    image: str,
    out: str | Path,
    *,
    target: str | None = None,
    patch: int = 8,
    stride: int = 4,
    batch_size: int = 256,
    outputs: Any = None,
) -> tuple[Path, Occlusion]:
    out = common.check_png(out, outputs)
    cls = subject.class_index(target)
    x, pictures = subject.from_files([image])
    found = occlusion(subject.model, x, cls, patch, stride, batch_size)
    which = "chosen" if cls is not None else "predicted"
    title = (
        f"Occlusion sensitivity (Zeiler & Fergus 2014) of {subject.name} on {Path(image).name}\n"
        f"{which} class {subject.classes[found.target]} ({common.percent(found.base_prob)} unoccluded), "
        f"{patch}x{patch} grey square, stride {stride}"
    )
    fig = figure(found, pictures[0], subject.classes, title)
    return common.save_figure(fig, out, outputs=outputs), found
