"""The paper's two pictures of what a trained net learned (AlexNet section 6.1).

- Figure 3: the first convolution's kernels as an image grid. Each kernel is min-max normalised on its
  own (all its channels together, so the colour balance survives), RGB kernels shown in colour and
  single-channel ones in grey, cells split by 1-px lines. The two-tower nets draw one panel per tower,
  which is where the paper saw tower 1 learn colour-agnostic and tower 2 colour-specific kernels.
- Figure 4: test images and the training images nearest to them in the last hidden layer's feature
  space (Euclidean distance on `model.embed`), computed in chunks so the bank can be the whole training set.
"""

from __future__ import annotations

import argparse
import copy
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab import argtypes, outfiles
from cnnlab.errors import CnnlabError

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


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """An (H, W, 3) float image in [0, 1] as an 8-bit PNG."""
    from PIL import Image

    path = check_png(path)
    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return outfiles.write_file(path, buf.getvalue(), "-o")


def check_png(path: str | Path) -> Path:
    """The -o of a picture command, checked before any work: a writable-looking *.png path."""
    p = outfiles.check_target(path, "-o")
    if p.suffix.lower() != ".png":
        raise CnnlabError(f"cannot write {p.name}: the picture is a PNG, name the file *.png")
    return p


def write_filters(model: nn.Module, path: str | Path, cols: int | None = None) -> Path:
    """The model's first conv layer(s) as the paper's Figure 3, kernels upsampled to fill MIN_WIDTH pixels."""
    convs = model.first_conv()  # type: ignore[operator]
    base = filter_grid(convs, cols).shape[1]  # width at scale 1; each step of scale adds one kernel width
    kernels_across = (base - (len(convs) - 1) * PANEL_GAP - len(convs) * SEP) // (
        convs[0].weight.shape[3] + SEP
    )
    extra = kernels_across * int(convs[0].weight.shape[3])
    scale = 1 + max(0, math.ceil((MIN_WIDTH - base) / extra))
    return save_png(filter_grid(convs, cols, scale), path)


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
def embed_all(model: nn.Module, loader: Any, device: torch.device | str = "cpu") -> torch.Tensor:
    """`model.embed` of every image of an evaluation loader, in the data set's order, on the CPU."""
    model.eval().to(device)
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


def neighbor_grid(
    queries: Sequence[torch.Tensor], neighbors: Sequence[Sequence[torch.Tensor]], side: int
) -> np.ndarray:
    """One row per query: the query, a gap, then its neighbours nearest first; (H, W, 3) in [0, 1]."""
    k = max(len(n) for n in neighbors)
    gap = 4 * SEP  # sets the query column apart, as in the paper's figure
    height = SEP + len(queries) * (side + SEP)
    width = SEP + (k + 1) * (side + SEP) + gap
    grid = np.full((height, width, 3), SEP_VALUE, dtype=np.float32)
    for r, (q, ns) in enumerate(zip(queries, neighbors, strict=True)):
        y = SEP + r * (side + SEP)
        grid[y : y + side, SEP : SEP + side] = _as_rgb(q, side)
        for j, img in enumerate(ns):
            x = SEP + (j + 1) * (side + SEP) + gap
            grid[y : y + side, x : x + side] = _as_rgb(img, side)
    return grid


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
) -> Neighbors:
    """Random test images (drawn with `seed`) and their k nearest training images by `model.embed`.

    Features are taken from the centre view, preprocessed exactly as the model was evaluated in training.
    """
    from cnnlab import data

    if queries < 1:
        raise CnnlabError(f"--queries {queries} must be at least 1")
    gen = torch.Generator().manual_seed(seed)
    query_idx = torch.randperm(len(test_ds), generator=gen)[: min(queries, len(test_ds))]
    bank_idx = torch.arange(len(train_ds))
    if bank_size is not None and bank_size < len(train_ds):
        bank_idx = torch.randperm(len(train_ds), generator=gen)[:bank_size].sort().values

    def features(ds: Any) -> torch.Tensor:
        loader = data.BatchLoader(ds, batch_size, train=False, aug=aug, stats=stats, seed=seed, device=device)
        return embed_all(model, loader, device)

    bank = features(subset(train_ds, bank_idx) if len(bank_idx) < len(train_ds) else train_ds)
    dist, pos = nearest(features(subset(test_ds, query_idx)), bank, k)
    return Neighbors(query_idx, dist, bank_idx[pos])


def raw_image(ds: Any, index: int, side: int) -> torch.Tensor:
    """The unaugmented uint8 [C, H, W] image (a folder image read at the loader's base size)."""
    return ds.images[index] if hasattr(ds, "images") else ds.read(index, side)


def write_neighbors(train_ds: Any, test_ds: Any, found: Neighbors, path: str | Path, side: int) -> Path:
    """The paper's Figure 4: each query test image, then its nearest training images."""
    queries = [raw_image(test_ds, int(i), side) for i in found.query_idx]
    neighbors = [[raw_image(train_ds, int(j), side) for j in row] for row in found.idx]
    return save_png(neighbor_grid(queries, neighbors, side), path)


# ---------------------------------------------------------------------------------------------------------
# Commands


def _load(source: str, init: bool, in_channels: int) -> tuple[nn.Module, dict[str, Any] | None]:
    """A trained model from a checkpoint, or with --init an untrained one by name."""
    if init:
        from cnnlab import models

        return models.create(source, in_channels=in_channels).eval(), None
    from cnnlab import checkpoint

    ckpt = checkpoint.load(source)
    return checkpoint.build_model(ckpt), ckpt


def _cmd_filters(args: argparse.Namespace) -> int:
    check_png(args.output)
    torch.manual_seed(args.seed)
    model, _ = _load(args.source, args.init, args.in_channels)
    print(f"wrote {write_filters(model, args.output, args.cols)}")
    return 0


def _cmd_neighbors(args: argparse.Namespace) -> int:
    from cnnlab import checkpoint, data

    check_png(args.output)
    ckpt = checkpoint.load(args.checkpoint)
    model = checkpoint.build_model(ckpt)
    if "augment" not in ckpt or "data_stats" not in ckpt:
        raise CnnlabError(f"{args.checkpoint} lacks the preprocessing settings; write it with `cnnlab train`")
    aug = data.AugmentConfig.from_dict(ckpt["augment"])
    stats = data.DataStats.from_dict(ckpt["data_stats"])
    train_ds, test_ds = data.load_from_args(args, "train"), data.load_from_args(args, "test")
    from cnnlab.distributed import resolve_device

    device = resolve_device(args.device or "auto")
    found = find_neighbors(
        model, train_ds, test_ds, aug, stats, queries=args.queries, k=args.k, bank_size=args.bank_size,
        batch_size=args.batch_size, device=device, seed=args.seed,
    )  # fmt: skip
    native = int(getattr(test_ds, "image_size", (0, 0))[0]) or int(aug.resize or aug.input_size)
    side = native * max(1, math.ceil(64 / native))  # small images blown up by a whole factor, crisp pixels
    print(f"wrote {write_neighbors(train_ds, test_ds, found, args.output, side)}")
    for q, d, j in zip(found.query_idx.tolist(), found.dist.tolist(), found.idx.tolist(), strict=True):
        pairs = ", ".join(f"{i} ({x:.3g})" for i, x in zip(j, d, strict=True))
        print(f"test {q}: nearest train images {pairs}")
    return 0


def register_cli(sub: Any) -> None:
    from cnnlab import data

    p = sub.add_parser("filters", help="the first conv layer's kernels as an image (the paper's Figure 3)")
    p.add_argument("source", metavar="CKPT", help="checkpoint file (or a model name with --init)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--init", action="store_true", help="SOURCE is a model name: draw its untrained kernels")
    p.add_argument(
        "--in-channels", type=argtypes.positive, default=3, help="with --init: 1 for grey inputs (3)"
    )
    p.add_argument(
        "--cols", type=argtypes.positive, help="kernels per row in each panel (default: a square-ish grid)"
    )
    p.add_argument(
        "--seed", type=argtypes.seed, default=0, help="with --init: the random initialisation's seed"
    )
    p.set_defaults(func=_cmd_filters)

    p = sub.add_parser(
        "neighbors", help="test images and their nearest training images in feature space (Fig. 4)"
    )
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file of a trained run")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    data.add_data_args(p, default=None)
    p.add_argument("--queries", type=argtypes.positive, default=8, help="test images to look up (8)")
    p.add_argument("--k", type=argtypes.positive, default=6, help="neighbours per query (6, as in the paper)")
    p.add_argument(
        "--bank-size", type=argtypes.positive, help="search a random part of the training set (default: all)"
    )
    p.add_argument("--batch-size", type=argtypes.positive, default=256, help="feature extraction batch (256)")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="cpu or cuda (default: cuda when available)"
    )
    p.add_argument("--seed", type=argtypes.seed, default=0, help="which test images are drawn")
    p.set_defaults(func=_cmd_neighbors)
