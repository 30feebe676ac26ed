"""Training-set statistics: what normalisation and the paper's PCA lighting need, computed once per run.

All values are in [0, 1] pixel units (a uint8 value v counts as v / 255), so the covariance, its
eigenvalues and the standard deviations are in those units too; `augment.py` applies them consistently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from cnnlab.data.dataset import ArrayDataset
from cnnlab.data.folder import FolderDataset

# Decoding a whole ImageNet to estimate 3 means and a 3x3 covariance would take hours; a seeded sample of
# this many files estimates them to about three decimals.
FOLDER_STATS_IMAGES = 10_000
FOLDER_STATS_SIDE = 256  # the paper's rescaled image (section 2)


@dataclass
class DataStats:
    """Per-channel mean/std, per-pixel mean image and the RGB covariance's eigen-decomposition.

    `eigvals` are the covariance's eigenvalues in descending order (variances, [0,1]^2 units) and the
    columns of `eigvecs` the matching unit eigenvectors p_i (sign fixed so each one's largest component is
    positive). For one-channel data these are the pixel variance and [[1]].
    """

    mean: torch.Tensor  # [C]
    std: torch.Tensor  # [C]
    mean_image: torch.Tensor  # [C, H, W]
    eigvals: torch.Tensor  # [C]
    eigvecs: torch.Tensor  # [C, C], column i is p_i
    count: int  # images the statistics were computed from

    @property
    def channels(self) -> int:
        return int(self.mean.numel())

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers plus one CPU tensor (the mean image): loadable with weights_only=True."""
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "eigvals": self.eigvals.tolist(),
            "eigvecs": self.eigvecs.tolist(),
            "count": self.count,
            "mean_image": self.mean_image.detach().to("cpu", torch.float32).contiguous(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataStats:
        def t(v: Any) -> torch.Tensor:
            return torch.as_tensor(v, dtype=torch.float32).clone()

        return cls(
            t(d["mean"]), t(d["std"]), t(d["mean_image"]), t(d["eigvals"]), t(d["eigvecs"]), int(d["count"])
        )


class _Accumulator:
    """Streaming sums in float64: per-pixel sums and the C x C sum of outer products."""

    def __init__(self) -> None:
        self.images = 0
        self.pixel_sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def add(self, batch_u8: torch.Tensor) -> None:
        x = batch_u8.to(torch.float64) / 255.0
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)  # [C, n*H*W]
        s, o = x.sum(0), flat @ flat.T
        self.pixel_sum = s if self.pixel_sum is None else self.pixel_sum + s
        self.outer = o if self.outer is None else self.outer + o
        self.images += x.shape[0]

    def result(self) -> DataStats:
        assert self.pixel_sum is not None and self.outer is not None, "no images"
        mean_image = self.pixel_sum / self.images
        pixels = self.images * mean_image.shape[1] * mean_image.shape[2]
        mean = mean_image.mean((1, 2))
        # Population covariance of the pixels' colour vectors (every pixel of every image a sample).
        cov = self.outer / pixels - torch.outer(mean, mean)
        vals, vecs = torch.linalg.eigh(cov)  # ascending
        vals, vecs = vals.flip(0).clamp_min(0.0), vecs.flip(1)
        signs = torch.sign(vecs.gather(0, vecs.abs().argmax(0, keepdim=True)))
        vecs = vecs * torch.where(signs == 0, 1.0, signs)
        f = torch.float32
        return DataStats(
            mean.to(f), cov.diagonal().clamp_min(0).sqrt().to(f), mean_image.to(f), vals.to(f), vecs.to(f),
            self.images,
        )  # fmt: skip


def compute_stats(
    train_ds: ArrayDataset | FolderDataset,
    *,
    max_images: int | None = None,
    side: int = FOLDER_STATS_SIDE,
    num_workers: int = 0,
    seed: int = 0,
) -> DataStats:
    """Statistics of a training set: all of an in-memory one, or a seeded sample of `max_images` files
    (default FOLDER_STATS_IMAGES) of a folder, each decoded at the paper's geometry (shorter side `side`,
    centre square)."""
    acc = _Accumulator()
    n = len(train_ds)
    if isinstance(train_ds, ArrayDataset):
        idx = None
        if max_images is not None and max_images < n:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_images].sort().values
        images = train_ds.images if idx is None else train_ds.images[idx]
        for chunk in images.split(2048):
            acc.add(chunk)
        return acc.result()
    limit = FOLDER_STATS_IMAGES if max_images is None else max_images
    picks = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(n, limit)].tolist()
    loader = DataLoader(
        _Resized(train_ds, side, picks), batch_size=64, num_workers=num_workers, collate_fn=torch.stack
    )
    for batch in loader:
        acc.add(batch)
    return acc.result()


class _Resized(torch.utils.data.Dataset[torch.Tensor]):
    def __init__(self, ds: FolderDataset, side: int, picks: list[int]) -> None:
        self.ds, self.side, self.picks = ds, side, picks

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.ds.read(self.picks[i], self.side)
