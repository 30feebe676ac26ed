"""The AlexNet paper's augmentation (section 4.1) and test views, done on whole batches on the device.

A training batch goes: uint8 batch on the device -> (resize to the base side) -> pad -> one gather that
crops every image at its own offset and mirrors the chosen ones -> float -> (resize to the model's input)
-> one fused multiply-add that normalises and adds each image's PCA lighting. No per-image Python.

Randomness is drawn on the CPU from the generator the loader passes in, so a seed gives the same crops,
flips and lighting on every device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.choices import NORMALIZATIONS, PCA_SCALES, VIEW_COUNTS
from cnnlab.data.stats import DataStats
from cnnlab.errors import CnnlabError

NORMALIZE = NORMALIZATIONS
VIEWS = VIEW_COUNTS


@dataclass(frozen=True)
class AugmentConfig:
    """What happens to an image between the data set and the network.

    input_size: the side the model takes (227 for AlexNet, 224 for VGG, 28/32 for the small nets).
    resize: side of the square the crops are taken from (the paper's 256); None keeps the native size.
        Folder images are always brought to this side (None: input_size) when decoded.
    random_crop / pad: training crops at random offsets from the (padded) base image; else the centre.
    flip: mirror half the training images (section 4.1).
    pca_std: std of the lighting coefficients alpha_i (0.1 in section 4.1; 0 turns lighting off).
    pca_scale: how alpha_i scales each principal axis p_i: "std" by sqrt(lambda_i), the standard deviation
        of the data along p_i (default); "eigenvalue" by lambda_i itself, the paper's formula read
        literally in [0, 1] pixel units. See docs/data.md.
    normalize: "channel" (x - mean_c) / std_c, "pixel" x - mean image (the paper's), or "none" (x in [0, 1]).
    """

    input_size: int
    resize: int | None = None
    random_crop: bool = True
    pad: int = 0
    flip: bool = True
    pca_std: float = 0.0
    normalize: str = "channel"
    pca_scale: str = "std"

    def __post_init__(self) -> None:
        # Sides and padding count pixels: a float (from a hand-edited or tampered file) is refused, not
        # rounded somewhere deep in the resize.
        for name in ("input_size", "resize", "pad"):
            value = getattr(self, name)
            if not (value is None and name == "resize") and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise CnnlabError(f"{name.replace('_', ' ')} must be a whole number of pixels, got {value!r}")
        for name in ("random_crop", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise CnnlabError(
                    f"{name.replace('_', ' ')} must be true or false, got {getattr(self, name)!r}"
                )
        if not isinstance(self.pca_std, (int, float)) or isinstance(self.pca_std, bool):
            raise CnnlabError(f"PCA lighting std must be a number, got {self.pca_std!r}")
        check_ranges(
            input_size=self.input_size, resize=self.resize, pad=self.pad, pca_std=self.pca_std,
            normalize=self.normalize, pca_scale=self.pca_scale,
        )  # fmt: skip

    @classmethod
    def paper(cls, input_size: int = 227) -> AugmentConfig:
        """Section 4.1: 256x256 images, random input_size patches and their mirrors, PCA lighting with
        alpha ~ N(0, 0.1), per-pixel mean subtracted (section 2)."""
        return cls(input_size, resize=256, random_crop=True, flip=True, pca_std=0.1, normalize="pixel")

    @classmethod
    def plain(cls, input_size: int, normalize: str = "channel") -> AugmentConfig:
        """No augmentation: the centre crop (or the whole image) at input_size, normalised."""
        return cls(input_size, random_crop=False, flip=False, normalize=normalize)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def check_ranges(
    *,
    input_size: int | None = None,
    resize: int | None = None,
    pad: int | None = None,
    pca_std: float | None = None,
    normalize: str | None = None,
    pca_scale: str | None = None,
) -> None:
    """The one home of the augmentation settings' ranges, for AugmentConfig and for `cnnlab train`'s flags
    as given (None: not given, not checked). Messages name the flag a user would change."""
    if input_size is not None and input_size < 1:
        raise CnnlabError(f"--input-size must be positive, got {input_size}")
    if resize is not None and resize < 1:
        raise CnnlabError(f"--resize must be positive, got {resize}")
    if pad is not None and pad < 0:
        raise CnnlabError(f"--pad (the crop padding) must be 0 or more, got {pad}")
    if pca_std is not None and not (pca_std >= 0 and math.isfinite(pca_std)):
        raise CnnlabError(f"--pca-std (the PCA lighting std) must be a number >= 0, got {pca_std}")
    if normalize is not None and normalize not in NORMALIZE:
        raise CnnlabError(f"unknown normalisation {normalize!r}; choose one of {', '.join(NORMALIZE)}")
    if pca_scale is not None and pca_scale not in PCA_SCALES:
        raise CnnlabError(f"unknown PCA scale {pca_scale!r}; choose one of {', '.join(PCA_SCALES)}")


def center_offset(size: int, crop: int) -> int:
    """torchvision's centre-crop offset (round half to even), so centre crops match it pixel for pixel."""
    return round((size - crop) / 2.0)


def crop_flip(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int, flip: torch.Tensor | None
) -> torch.Tensor:
    """Crop image b of x [B, C, H, W] at (top[b], left[b]) to size x size, mirrored where flip[b].

    One gather over a flat index shared by the channels: the mirror is folded into the column index, so
    crop and flip cost one pass over the output (no padding or flipping copies of the input).
    """
    B, C, H, W = x.shape
    ar = torch.arange(size, device=x.device)
    cols = ar.expand(B, size) if flip is None else torch.where(flip[:, None], size - 1 - ar, ar)
    rows = top[:, None] + ar  # [B, size]
    cols = left[:, None] + cols
    flat = (rows[:, :, None] * W + cols[:, None, :]).view(B, 1, size * size).expand(B, C, size * size)
    return x.reshape(B, C, H * W).gather(2, flat).view(B, C, size, size)


def eval_views(x: torch.Tensor, views: str, input_size: int) -> torch.Tensor:
    """Test views of a batch x [N, C, H, W] as [V, N, C, s, s] (s = input_size).

    center: the centre crop (V=1); flip: it and its mirror (V=2); tencrop: the centre and the four corner
    crops, then the mirrors of those five in the same order (V=10; view i + 5 mirrors view i), the
    paper's test-time views (section 4.1) whose softmax outputs are averaged.
    """
    if views not in VIEWS:
        raise CnnlabError(f"unknown test views {views!r}; choose one of {', '.join(VIEWS)}")
    H, W = x.shape[-2:]
    s = input_size
    if s > H or s > W:
        raise CnnlabError(f"cannot take {s}x{s} test crops from {H}x{W} images; resize them first")
    top, left = center_offset(H, s), center_offset(W, s)
    crops = [x[..., top : top + s, left : left + s]]
    if views == "tencrop":
        for t, l in ((0, 0), (0, W - s), (H - s, 0), (H - s, W - s)):
            crops.append(x[..., t : t + s, l : l + s])
    out = torch.stack(crops)
    return out if views == "center" else torch.cat([out, out.flip(-1)])


def lighting_offsets(
    alpha: torch.Tensor, eigvals: torch.Tensor, eigvecs: torch.Tensor, scale: str = "std"
) -> torch.Tensor:
    """Section 4.1's colour shift per image: sum_i alpha_i * s_i * p_i, [B, C] in [0, 1] pixel units, with
    s_i = sqrt(lambda_i) ("std") or lambda_i ("eigenvalue"); alpha [B, C], eigvecs' columns the p_i."""
    s = eigvals.sqrt() if scale == "std" else eigvals
    return (alpha * s.to(alpha)) @ eigvecs.to(alpha).T


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    x = x if x.is_floating_point() else x.float()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


class Augmenter:
    """The batch pipeline for one configuration, one set of statistics and one source geometry."""

    def __init__(
        self,
        aug: AugmentConfig,
        stats: DataStats,
        image_size: tuple[int, int],
        device: torch.device | str,
        prepad: bool = False,
    ) -> None:
        """image_size: (H, W) of the uint8 batches `train`/`eval` receive. prepad: the caller keeps its
        training images padded once (`pad_source`), so `train` receives them padded and skips a copy."""
        self.aug = aug
        self.stats = stats
        self.device = torch.device(device)
        self.native = (int(image_size[0]), int(image_size[1]))
        self.base = (aug.resize, aug.resize) if aug.resize else self.native
        # Crops never exceed the base image; a smaller base (28 for AlexNet's 227) is upsampled afterwards.
        self.crop = min(aug.input_size, *self.base)
        dev, C = self.device, stats.channels
        mean, std = stats.mean.to(dev), stats.std.to(dev).clamp_min(1e-6)
        self.mean_image: torch.Tensor | None = None
        if aug.normalize == "channel":
            self.scale = (1.0 / (255.0 * std)).view(1, C, 1, 1)
            self.shift, self.gain = -mean / std, 1.0 / std
        else:
            self.scale = torch.full((1, C, 1, 1), 1.0 / 255.0, device=dev)
            self.shift, self.gain = torch.zeros(C, device=dev), torch.ones(C, device=dev)
        if aug.normalize == "pixel":
            # The mean image is subtracted at the base geometry, before cropping (section 2), so a crop
            # has the matching part of the mean removed; it is stored at the training set's size.
            self.mean_image = _resize(stats.mean_image.to(dev)[None], self.base)[0]
            self.scale = torch.ones_like(self.scale)
        self.eigvals, self.eigvecs = stats.eigvals.to(dev), stats.eigvecs.to(dev)
        # Padding commutes with nothing before it only when nothing comes before it: same size, raw pixels.
        self.pad = aug.pad if aug.random_crop else 0
        self.prepad = prepad and self.pad > 0 and self.base == self.native and aug.normalize != "pixel"

    def pad_source(self, images: torch.Tensor) -> torch.Tensor:
        """The training images as `train` wants them: padded once here if `prepad` (zeros, i.e. black)."""
        return F.pad(images, (self.pad,) * 4) if self.prepad else images

    def _check(self, x: torch.Tensor, padded: bool = False) -> None:
        p = self.pad if padded else 0
        size = (self.native[0] + 2 * p, self.native[1] + 2 * p)
        if x.dim() != 4 or tuple(x.shape[-2:]) != size or x.shape[1] != self.stats.channels:
            raise ValueError(
                f"batch {tuple(x.shape)} does not match the augmenter's {self.stats.channels}x{size}"
            )

    def _to_base(self, x: torch.Tensor) -> torch.Tensor:
        x = _resize(x, self.base)
        if self.mean_image is not None:
            x = x.float().div(255.0).sub_(self.mean_image)  # div makes a new tensor: the input is kept
        return x

    def _finish(self, x: torch.Tensor, light: torch.Tensor | None) -> torch.Tensor:
        """Normalise and add each image's lighting: x * scale_c + shift_bc, uint8 or float in, float32 out."""
        shift = (self.shift[None] if light is None else self.shift[None] + light * self.gain[None])[
            ..., None, None
        ]
        if x.is_cuda:
            return torch.addcmul(shift, x, self.scale)  # one kernel, converting uint8 on the fly
        # On the CPU addcmul's broadcasting path is ~2x slower than two in-place vectorised passes.
        return (x.mul(self.scale) if x.is_floating_point() else x.float().mul_(self.scale)).add_(shift)

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A training batch: uint8 [B, C, H, W] on the device (padded if `prepad`) -> float [B, C, s, s]."""
        self._check(x, padded=self.prepad)
        aug, B = self.aug, x.shape[0]
        (bh, bw), c, p = self.base, self.crop, self.pad
        # All randomness from `gen`, on the CPU, in a fixed order: crops, flips, lighting.
        if aug.random_crop:
            top = torch.randint(0, bh + 2 * p - c + 1, (B,), generator=gen)
            left = torch.randint(0, bw + 2 * p - c + 1, (B,), generator=gen)
        else:
            top = torch.full((B,), center_offset(bh, c), dtype=torch.int64)
            left = torch.full((B,), center_offset(bw, c), dtype=torch.int64)
        flip = torch.rand(B, generator=gen) < 0.5 if aug.flip else None
        alpha = torch.randn(B, self.stats.channels, generator=gen) * aug.pca_std if aug.pca_std > 0 else None
        dev = self.device
        if not self.prepad:
            x = self._to_base(x)
            if p:
                x = F.pad(x, (p, p, p, p))  # zeros: black in channel/none mode, the mean in pixel mode
        x = crop_flip(x, top.to(dev), left.to(dev), c, None if flip is None else flip.to(dev))
        if c != aug.input_size:
            x = _resize(x, (aug.input_size, aug.input_size))
        light = None
        if alpha is not None:
            light = lighting_offsets(alpha.to(dev), self.eigvals, self.eigvecs, aug.pca_scale)
        return self._finish(x, light)

    def tencrop_pad(self) -> int:
        """The padding ten-crop adds around each test image: 0 when the image is larger than the crop both
        ways (the paper's case: 224 patches of 256 images), else the run's training pad, so the corner
        crops are the extreme translations training drew. With no pad to use the ten crops would be
        the centre crop and its mirror five times over: refused."""
        (bh, bw), c = self.base, self.crop
        if bh > c and bw > c:
            return 0
        if self.pad == 0:
            raise CnnlabError(
                f"--views tencrop needs images larger than the {c}x{c} crop, or a run trained on padded "
                f"random crops: these are {bh}x{bw} and the run trained without, so all ten crops would be "
                "the centre crop and its mirror; use --views flip (the same result, five times faster)"
            )
        return self.pad

    def eval(self, x: torch.Tensor, views: str = "center") -> torch.Tensor:
        """An evaluation batch: uint8 [B, C, H, W] -> float32 [V, B, C, s, s]."""
        self._check(x)
        B, s = x.shape[0], self.aug.input_size
        base = self._to_base(x)
        if views == "tencrop" and self.tencrop_pad():
            base = F.pad(base, (self.tencrop_pad(),) * 4)  # zeros, as training pads (black, or the mean)
        v = eval_views(base, views, self.crop)
        V = v.shape[0]
        v = v.reshape(V * B, *v.shape[2:])
        if self.crop != s:
            v = _resize(v, (s, s))
        return self._finish(v, None).view(V, B, -1, s, s)
