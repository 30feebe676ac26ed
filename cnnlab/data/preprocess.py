"""Image files -> the tensor a trained model expects, exactly as its evaluation batches were made."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from cnnlab.data.augment import AugmentConfig, Augmenter
from cnnlab.data.folder import read_image
from cnnlab.data.stats import DataStats
from cnnlab.errors import CnnlabError


def preprocess_files(
    paths: Sequence[str | os.PathLike[str]], aug: AugmentConfig, stats: DataStats
) -> torch.Tensor:
    """Decode files into float32 [N, C, s, s] (s = aug.input_size), the centre view a test batch gets.

    Each file is converted to the training data's channel count (grey for MNIST-like sets, RGB else),
    its shorter side resized to the side of the training images (the side of the statistics' mean image)
    and centre-cropped square: from there on it is a uint8 batch like the training set's own, and goes
    through the evaluation code itself (resize to aug.resize, centre crop, normalise).
    """
    if not paths:
        raise CnnlabError("no image files given")
    for p in paths:
        if not os.path.isfile(p):
            raise CnnlabError(f"{p}: no such file")
    side = int(stats.mean_image.shape[-1])
    batch = torch.stack([read_image(p, stats.channels, side) for p in paths])
    return Augmenter(aug, stats, (side, side), "cpu").eval(batch, "center")[0]
