"""The paper's two pictures of what a trained net learned (AlexNet section 6.1).

- Figure 3: the first convolution's kernels as an image grid. Each kernel is min-max normalised on its
  own (all its channels together, so the colour balance survives), RGB kernels shown in colour and
  single-channel ones in grey, cells split by 1-px lines. The two-tower nets draw one labelled panel per
  tower with a dark rule between them, which is where the paper saw tower 1 learn colour-agnostic and
  tower 2 colour-specific kernels. The kernels are drawn 1:1 in pixels (no resampling) under a title.
- Figure 4: test images and the training images nearest to them in the last hidden layer's feature
  space (Euclidean distance on `model.embed`), computed in chunks so the bank can be the whole training set.
  The query column is framed; every image is labelled with its class, every neighbour with its distance.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab import data
from cnnlab.device import autocast
from cnnlab.errors import CnnlabError
from cnnlab.pictures.common import PixelLayout, check_png, pyplot, save_figure

SEP = 1  # separator width between cells and around each panel, in pixels
PANEL_GAP = 8  # extra separator between the towers' panels
SEP_VALUE = 1.0  # separators are white
MIN_WIDTH = 640  # the written filter image is at least this wide (kernels upsampled by a whole factor)


# ---------------------------------------------------------------------------------------------------------
# Figure 3: filters


def kernel_image(w: torch.Tensor) -> np.ndarray:
    """One kernel [C, kh, kw] as an (kh, kw, 3) float image in [0, 1]."""
    w = w.detach().float().cpu()
    if w.shape[0] != 3:
        w = w.mean(dim=0, keepdim=True).expand(3, -1, -1)  # grey (1 channel, or no colour meaning)
    lo, hi = w.min(), w.max()
    scaled = (w - lo) / (hi - lo) if hi > lo else torch.full_like(w, 0.5)
    return scaled.permute(1, 2, 0).numpy()


def filter_grid(
    convs: Sequence[nn.Conv2d | torch.Tensor], cols: int | None = None, scale: int = 1
) -> np.ndarray:
    """The kernels of each conv (or weight tensor [O, C, kh, kw]) as panels side by side, (H, W, 3) in [0, 1].

    Kernel i of panel p sits at row i // cols, column i % cols; its top-left pixel is at
    y = SEP + row * (kh*scale + SEP), x = p * (panel width + PANEL_GAP) + SEP + col * (kw*scale + SEP),
    where a panel is SEP + cols * (kw*scale + SEP) pixels wide.
    """
    weights = [c.weight if isinstance(c, nn.Conv2d) else c for c in convs]
    if not weights:
        raise ValueError("filter_grid needs at least one convolution")
    kh, kw = int(weights[0].shape[2]), int(weights[0].shape[3])
    count = max(int(w.shape[0]) for w in weights)
    if cols is not None and cols < 1:
        raise CnnlabError(f"--cols {cols} must be at least 1")
    # More columns than kernels would only add empty cells (and --cols 1e9 a gigapixel of them).
    cols = min(cols, count) if cols else math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    ch, cw = kh * scale, kw * scale
    panel_w = SEP + cols * (cw + SEP)
    height = SEP + rows * (ch + SEP)
    width = len(weights) * panel_w + (len(weights) - 1) * PANEL_GAP
    grid = np.full((height, width, 3), SEP_VALUE, dtype=np.float32)
    for p, w in enumerate(weights):
        for i in range(int(w.shape[0])):
            y = SEP + (i // cols) * (ch + SEP)
            x = p * (panel_w + PANEL_GAP) + SEP + (i % cols) * (cw + SEP)
            cell = kernel_image(w[i]).repeat(scale, axis=0).repeat(scale, axis=1)
            grid[y : y + ch, x : x + cw] = cell
    return grid


def filter_scale(convs: Sequence[nn.Conv2d], cols: int | None = None) -> int:
    """The whole upsampling factor that makes the grid of all panels at least MIN_WIDTH pixels wide."""
    base = filter_grid(convs, cols).shape[1]  # width at scale 1; each step of scale adds one kernel width
    kernels_across = (base - (len(convs) - 1) * PANEL_GAP - len(convs) * SEP) // (
        convs[0].weight.shape[3] + SEP
    )
    extra = kernels_across * int(convs[0].weight.shape[3])
    return 1 + max(0, math.ceil((MIN_WIDTH - base) / extra))


# Layout of the written filter picture, in pixels.
_MARGIN, _TITLE_H, _LABEL_H, _TOWER_GAP = 12, 46, 24, 28


def write_filters(model: nn.Module, path: str | Path, cols: int | None = None, outputs: Any = None) -> Path:
    """The model's first conv layer(s) as the paper's Figure 3 (`filters_figure`), as a PNG file
    (`outputs`: the rule for replacing files, `common.check_png`)."""
    path = check_png(path, outputs)
    return save_figure(filters_figure(model, cols), path, pixel_exact=True, outputs=outputs)


def filters_figure(model: nn.Module, cols: int | None = None) -> Any:
    """Figure 3 laid out in pixels: a title, one labelled panel per tower with a dark rule between
    towers, kernels upsampled to fill MIN_WIDTH pixels and drawn 1:1 (save it with pixel_exact=True)."""
    convs = model.first_conv()  # type: ignore[operator]
    scale = filter_scale(convs, cols)
    panels = [filter_grid([c], cols, scale) for c in convs]
    width = 2 * _MARGIN + sum(p.shape[1] for p in panels) + _TOWER_GAP * (len(panels) - 1)
    height = 2 * _MARGIN + _TITLE_H + _LABEL_H + max(p.shape[0] for p in panels)
    layout = PixelLayout(width, height)
    w = convs[0].weight
    count = sum(int(c.weight.shape[0]) for c in convs)
    name = getattr(model, "arch", type(model).__name__)
    title = (
        f"{name}: first-layer kernels (AlexNet paper, Figure 3)\n"
        f"{count} kernels of {w.shape[2]}x{w.shape[3]}x{w.shape[1]}, each scaled to its own min-max"
    )
    layout.text(width / 2, _MARGIN, title, px=15, ha="center", linespacing=1.3)
    x = _MARGIN
    top = _MARGIN + _TITLE_H + _LABEL_H
    for p, (conv, panel) in enumerate(zip(convs, panels, strict=True)):
        n = int(conv.weight.shape[0])
        label = f"tower {p + 1} (GPU {p + 1}): {n} kernels" if len(convs) > 1 else f"{n} kernels"
        layout.text(x + panel.shape[1] / 2, top - _LABEL_H + 2, label, px=13, ha="center")
        layout.image(panel, x, top)
        x += panel.shape[1]
        if p < len(panels) - 1:
            layout.vline(x + _TOWER_GAP / 2, top - _LABEL_H, top + panel.shape[0], color="0.2", lw=2)
            x += _TOWER_GAP
    return layout.fig


# ---------------------------------------------------------------------------------------------------------
# Figure 4: nearest neighbours in feature space


def nearest(
    query_feats: torch.Tensor, bank_feats: torch.Tensor, k: int, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean k nearest bank rows for each query: (distances, indices), both [Q, k], nearest first.

    The bank is scanned in chunks with a running top-k, so a 60,000-image bank never needs a Q x N matrix
    at once. Chunks are ranked with cdist's fast matrix-product form, whose cancellation error grows with
    the features' norm; 2k candidates survive each chunk and their distances are then recomputed exactly,
    so an image's duplicate comes back at distance 0.
    """
    if not 1 <= k <= bank_feats.shape[0]:
        raise CnnlabError(f"--k {k} must be between 1 and the bank size {bank_feats.shape[0]}")
    q = query_feats.float()
    keep = min(2 * k, bank_feats.shape[0])
    best_d = torch.empty((q.shape[0], 0), device=q.device)
    best_i = torch.empty((q.shape[0], 0), dtype=torch.int64, device=q.device)
    for start in range(0, bank_feats.shape[0], chunk):
        block = bank_feats[start : start + chunk].to(q.device).float()
        ids = torch.arange(start, start + block.shape[0], device=q.device).expand(q.shape[0], -1)
        d_all = torch.cat([best_d, torch.cdist(q, block)], dim=1)
        i_all = torch.cat([best_i, ids], dim=1)
        best_d, pos = d_all.topk(min(keep, d_all.shape[1]), dim=1, largest=False, sorted=True)
        best_i = i_all.gather(1, pos)
    candidates = bank_feats[best_i.cpu()].to(q.device).float()  # [Q, 2k, D]
    exact = (candidates - q[:, None, :]).norm(dim=2)
    dist, pos = exact.topk(k, dim=1, largest=False, sorted=True)
    return dist, best_i.gather(1, pos)


@torch.no_grad()
def embed_all(
    model: nn.Module, loader: Any, device: torch.device | str = "cpu", amp: torch.dtype | None = None
) -> torch.Tensor:
    """`model.embed` of every image of an evaluation loader, in the data set's order, on the CPU, under
    the autocast `amp` (a restored checkpoint's `Trained.amp`: as its run evaluated it)."""
    model.eval().to(device)
    with autocast(amp, torch.device(device).type):
        feats = [model.embed(x[0].to(device)).float().cpu() for x, _ in loader.epoch(0)]  # type: ignore[operator]
    return torch.cat(feats)


def _as_rgb(img: torch.Tensor, side: int) -> np.ndarray:
    """A uint8 [C, H, W] image as (side, side, 3) floats in [0, 1] (grey repeated, resized if needed)."""
    from PIL import Image

    arr = img.detach().cpu()
    arr = arr.expand(3, -1, -1) if arr.shape[0] == 1 else arr[:3]
    pil = Image.fromarray(arr.permute(1, 2, 0).numpy().astype(np.uint8))
    if pil.size != (side, side):
        small = pil.size[0] < side  # upsample small images blockily, as pixels; shrink big ones smoothly
        pil = pil.resize((side, side), Image.Resampling.NEAREST if small else Image.Resampling.BILINEAR)
    return np.asarray(pil, dtype=np.float32) / 255.0


@dataclass
class Neighbors:
    query_idx: torch.Tensor  # [Q] indices into the test split
    dist: torch.Tensor  # [Q, k] Euclidean distances in feature space, nearest first
    idx: torch.Tensor  # [Q, k] indices into the training split (the bank)


def subset(ds: Any, indices: torch.Tensor) -> Any:
    """The samples `indices` of an ArrayDataset or FolderDataset, as a data set of the same kind."""
    if hasattr(ds, "subset"):
        return ds.subset(indices)
    part = copy.copy(ds)  # FolderDataset: the same folder, fewer files
    part.samples = [ds.samples[int(i)] for i in indices]
    part._digest = None
    return part


def find_neighbors(
    model: nn.Module,
    train_ds: Any,
    test_ds: Any,
    aug: Any,
    stats: Any,
    *,
    queries: int = 8,
    k: int = 6,
    bank_size: int | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
    amp: torch.dtype | None = None,
) -> Neighbors:
    """Random test images (drawn with `seed`) and their k nearest training images by `model.embed`.

    Features are taken from the centre view, preprocessed exactly as the model was evaluated in training.
    """
    if queries < 1:
        raise CnnlabError(f"--queries {queries} must be at least 1")
    gen = torch.Generator().manual_seed(seed)
    query_idx = torch.randperm(len(test_ds), generator=gen)[: min(queries, len(test_ds))]
    bank_idx = torch.arange(len(train_ds))
    if bank_size is not None and bank_size < len(train_ds):
        bank_idx = torch.randperm(len(train_ds), generator=gen)[:bank_size].sort().values

    def features(ds: Any) -> torch.Tensor:
        loader = data.BatchLoader(ds, batch_size, train=False, aug=aug, stats=stats, seed=seed, device=device)
        return embed_all(model, loader, device, amp)

    bank = features(subset(train_ds, bank_idx) if len(bank_idx) < len(train_ds) else train_ds)
    dist, pos = nearest(features(subset(test_ds, query_idx)), bank, k)
    return Neighbors(query_idx, dist, bank_idx[pos])


def raw_image(ds: Any, index: int, side: int) -> torch.Tensor:
    """The unaugmented uint8 [C, H, W] image (a folder image read at the loader's base size)."""
    return ds.images[index] if hasattr(ds, "images") else ds.read(index, side)


def picture_side(ds: Any, aug: Any) -> int:
    """The side neighbour images are drawn at: small images blown up by a whole factor (crisp pixels)."""
    native = int(getattr(ds, "image_size", (0, 0))[0]) or int(aug.resize or aug.input_size)
    return native * max(1, math.ceil(64 / native))


def label_of(ds: Any, index: int) -> str:
    return str(ds.classes[int(ds.labels[index])])


def neighbor_captions(train_ds: Any, test_ds: Any, found: Neighbors) -> list[list[str]]:
    """Per query row: the query's class, then each neighbour's class and distance."""
    rows = []
    for q, dists, idx in zip(found.query_idx.tolist(), found.dist.tolist(), found.idx.tolist(), strict=True):
        row = [f"query: test #{q}\n{label_of(test_ds, q)}"]
        row += [f"{label_of(train_ds, j)}\nd = {d:.3g}" for j, d in zip(idx, dists, strict=True)]
        rows.append(row)
    return rows


def write_neighbors(
    train_ds: Any,
    test_ds: Any,
    found: Neighbors,
    path: str | Path,
    side: int,
    title: str = "",
    outputs: Any = None,
) -> Path:
    """The paper's Figure 4 (`neighbors_figure`) as a PNG file (`outputs`: as for `write_filters`)."""
    path = check_png(path, outputs)
    return save_figure(neighbors_figure(train_ds, test_ds, found, side, title), path, outputs=outputs)


def neighbors_figure(train_ds: Any, test_ds: Any, found: Neighbors, side: int, title: str = "") -> Any:
    """Each query test image (first column, framed), then its nearest training images, nearest first,
    each labelled with its class and its feature-space distance."""
    plt = pyplot()
    captions = neighbor_captions(train_ds, test_ds, found)
    q, k = found.idx.shape
    fig, axes = plt.subplots(q, k + 1, figsize=(1.3 * (k + 1) + 0.4, 1.55 * q + 0.7), squeeze=False,
                             layout="constrained")  # fmt: skip
    for r in range(q):
        images = [raw_image(test_ds, int(found.query_idx[r]), side)]
        images += [raw_image(train_ds, int(j), side) for j in found.idx[r]]
        query_label = int(test_ds.labels[int(found.query_idx[r])])
        # A neighbour of another class than its query is captioned in red.
        colours = ["tab:orange"] + [
            "black" if int(train_ds.labels[int(j)]) == query_label else "tab:red" for j in found.idx[r]
        ]
        for c, (img, caption) in enumerate(zip(images, captions[r], strict=True)):
            ax = axes[r, c]
            ax.imshow(_as_rgb(img, side), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(caption, fontsize=7, pad=2, color=colours[c])
            if c == 0:  # the query column stands out: a thick coloured frame
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:orange")
                    spine.set_linewidth(3)
    fig.suptitle(title or "test images (framed) and their nearest training images in feature space, nearest "
                 "first (Figure 4)", fontsize=11)  # fmt: skip
    return fig
