"""What every picture of a trained net shares: the net and its preprocessing rebuilt from a checkpoint,
images in the two forms a picture needs (normalised for the net, [0, 1] pixels for the eye), class names,
the heat-map overlay and writing a figure.

The net sees exactly what evaluation fed it: image files go through `data.preprocess_files`, data-set
images through the run's own `Augmenter` (centre view), both with the checkpoint's statistics. The picture
shows the same crop with `normalize="none"`, so a heat map lines up with the pixels under it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab import checkpoint, data, outfiles, report
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError

HEAT_ALPHA = 0.55  # opacity of a heat map over its image: the image stays readable under it


@dataclass
class Subject:
    """A trained net with what it takes to feed it: classes, preprocessing, device."""

    model: nn.Module
    ckpt: dict[str, Any]
    classes: list[str]
    aug: Any  # data.AugmentConfig
    stats: Any  # data.DataStats
    device: torch.device
    amp: torch.dtype | None = None  # the autocast its numbers are computed under (`device.eval_amp`)

    @property
    def name(self) -> str:
        return str(self.ckpt["model_name"])

    def from_files(self, paths: Sequence[str]) -> tuple[torch.Tensor, np.ndarray]:
        """Image files as the net's input [N, C, s, s] (on the device) and as pictures [N, s, s, 3]."""
        x = data.preprocess_files(paths, self.aug, self.stats)
        shown = data.preprocess_files(paths, dataclasses.replace(self.aug, normalize="none"), self.stats)
        return x.to(self.device), as_pictures(shown)

    def from_uint8(self, images: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """A data set's uint8 images [N, C, H, W] as the net's input and as pictures (the centre view)."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        x = data.Augmenter(self.aug, self.stats, size, self.device).eval(images.to(self.device))[0]
        plain = dataclasses.replace(self.aug, normalize="none")
        shown = data.Augmenter(plain, self.stats, size, "cpu").eval(images.cpu())[0]
        return x, as_pictures(shown)

    def base_side(self) -> int:
        """The side a folder data set's images are decoded at (what the run's loader used)."""
        return int(self.aug.resize or self.stats.mean_image.shape[-1])

    def class_index(self, name: str | None) -> int | None:
        """The index of class `name` (None stays None); accepts the index itself too."""
        if name is None:
            return None
        if name in self.classes:
            return self.classes.index(name)
        if name.isdigit() and int(name) < len(self.classes):
            return int(name)
        shown = ", ".join(self.classes[:12]) + (", ..." if len(self.classes) > 12 else "")
        raise CnnlabError(f"--class {name!r} is not a class of this net; choose one of {shown}")


def load_subject(path: str | Path, device: str = "auto") -> Subject:
    """The checkpoint's net in eval mode on `device` (auto: CUDA when present), with its preprocessing."""
    dev = resolve_device(device)
    net = checkpoint.restore(checkpoint.load(path), dev)
    return Subject(net.model, net.ckpt, net.classes, net.aug, net.stats, dev, net.amp)


def as_pictures(x: torch.Tensor) -> np.ndarray:
    """Float images [N, C, H, W] in [0, 1] as [N, H, W, 3] (grey repeated over the three channels)."""
    x = x.detach().float().cpu().clamp(0, 1)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    return x.permute(0, 2, 3, 1).numpy()


def upsample(maps: torch.Tensor, side: int) -> torch.Tensor:
    """Maps [N, h, w] bilinearly resized to [N, side, side] (a heat map over its input image)."""
    import torch.nn.functional as F

    out = F.interpolate(maps[:, None].float(), size=(side, side), mode="bilinear", align_corners=False)
    return out[:, 0]


def overlay(ax: Any, picture: np.ndarray, heat: np.ndarray, cmap: str, norm: Any) -> Any:
    """Draw `heat` (coloured by `norm`, a matplotlib Normalize) over `picture` on `ax`; returns the heat
    image (for a colour bar)."""
    ax.imshow(picture, interpolation="nearest")
    shown = ax.imshow(heat, cmap=cmap, norm=norm, alpha=HEAT_ALPHA, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def show_image(ax: Any, picture: np.ndarray, title: str = "") -> None:
    ax.imshow(picture, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def outputs_of(args: Any, *inputs: Any) -> Any:
    """The output rule for a picture command (`outfiles.Outputs`): its -o, its --force, and the files it
    reads (never replaced, even with --force)."""

    return outfiles.Outputs("-o", bool(getattr(args, "force", False)), [str(i) for i in inputs if i])


def check_png(path: str | Path, outputs: Any = None) -> Path:
    """`path` if it names a PNG file that may be written (`outputs`: the command's rule, by default no
    existing file is replaced); a CnnlabError before any work is done otherwise (empty, a folder, below a
    file, not *.png, an existing file without --force, one of the command's inputs)."""

    path = (outputs or outfiles.Outputs("-o")).check(path)
    if path.suffix.lower() != ".png":
        raise CnnlabError(f"cannot write {path.name}: the picture is a PNG, name the file *.png")
    return path


def figure_bytes(fig: Any, pixel_exact: bool = False) -> bytes:
    """A matplotlib figure as PNG bytes.

    `pixel_exact`: the figure is laid out in whole pixels at PIXEL_DPI (`PixelLayout`): saved uncropped
    at that resolution, so its images keep every pixel (a kernel's 1-px separators survive).
    """

    return report.figure_png(fig, PIXEL_DPI, tight=False) if pixel_exact else report.figure_png(fig)


def save_figure(fig: Any, path: str | Path, pixel_exact: bool = False, outputs: Any = None) -> Path:
    """Write a matplotlib figure as a PNG file (atomically, its folder made if needed), under `outputs`'
    rule (`check_png`)."""

    rule = outputs or outfiles.Outputs("-o")
    path = check_png(path, rule)
    return Path(rule.write({path: figure_bytes(fig, pixel_exact)})[0])


def pyplot() -> Any:

    return report._pyplot()


def percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.001 else f"{100 * p:.2g}%"


PIXEL_DPI = 100  # a pixel-exact figure's resolution: 1 inch = 100 px


class PixelLayout:
    """A figure placed in whole pixels from its top-left corner, for pictures whose images must keep
    every pixel (saved with `save_figure(..., pixel_exact=True)`)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.fig = pyplot().figure(figsize=(width / PIXEL_DPI, height / PIXEL_DPI), dpi=PIXEL_DPI)

    def _box(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        return (x / self.width, 1 - (y + h) / self.height, w / self.width, h / self.height)

    def image(self, array: np.ndarray, x: int, y: int) -> Any:
        """`array` (H, W, 3) drawn 1:1 with its top-left pixel at (x, y)."""
        h, w = array.shape[:2]
        ax = self.fig.add_axes(self._box(x, y, w, h))
        ax.imshow(array, interpolation="none", aspect="auto")
        ax.set_axis_off()
        return ax

    def text(self, x: float, y: float, s: str, px: float = 14, **kw: Any) -> None:
        """Text whose top edge is at (x, y) (`ha` decides what x is), `px` pixels tall."""
        kw.setdefault("va", "top")
        self.fig.text(x / self.width, 1 - y / self.height, s, fontsize=px * 72 / PIXEL_DPI, **kw)

    def vline(self, x: float, y0: float, y1: float, **kw: Any) -> None:
        from matplotlib.lines import Line2D

        line = Line2D([x / self.width] * 2, [1 - y0 / self.height, 1 - y1 / self.height], **kw)
        self.fig.add_artist(line)
