"""IDX files (MNIST, Fashion-MNIST), gzipped or not, read without trusting the header.

Format (LeCun's MNIST page): two zero bytes, a type code, the number of dimensions, then one big-endian
uint32 per dimension, then the values in C order. The header's sizes are checked against the file's size
and the memory available before anything is allocated, so a corrupt header cannot make us reserve
gigabytes, and the data is then read in bounded chunks into one buffer.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab import limits
from cnnlab.data.dataset import ArrayDataset, check_labels
from cnnlab.errors import CnnlabError

# The type codes of the IDX format, as numpy dtypes (multi-byte types are big-endian).
MAX_DIMS = 8  # an IDX file announcing more is damaged (images: 3, labels: 1)
_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# deflate cannot compress better than about 1032:1. Real image and label files compress 2-10x (MNIST:
# 5x); a file announcing hundreds of times its size is a decompression bomb, refused before inflating it.
GZIP_RATIO_LIMIT = 200
_CHUNK = 1 << 24  # bytes read per call


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _read_header(f: Any, path: Path) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """The IDX header: the magic number (two zero bytes, the type code, the number of dimensions), then
    one big-endian uint32 per dimension."""
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _TYPES or head[3] == 0:
        raise CnnlabError(
            f"{path}: bad IDX magic number {head.hex() or '(none)'} (expected 0000TTDD: two zero "
            "bytes, a type code, the number of dimensions); not an MNIST-style IDX file"
        )
    dtype, ndim = _TYPES[head[2]], head[3]
    if not 1 <= ndim <= MAX_DIMS:  # numpy arrays have at most 64; MNIST-style files 1 or 3
        raise CnnlabError(
            f"{path}: the IDX header announces {ndim} dimensions (images have 3, labels 1); the "
            "file is damaged"
        )
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise CnnlabError(f"{path}: truncated IDX header ({ndim} dimensions announced)")
    return dtype, struct.unpack(f">{ndim}I", raw_dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file into a numpy array; any problem is a CnnlabError naming the file."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CnnlabError(f"{path} is empty (0 bytes): delete it and get the file again")
    gz = _is_gzip(path)
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            dtype, dims = _read_header(f, path)
            ndim = len(dims)
            count = 1
            for d in dims:
                count *= d
            want = count * dtype.itemsize
            # What the file can hold at most: its payload if raw, a plausible compression ratio if gzipped.
            payload = size - 4 - 4 * ndim
            most = size * GZIP_RATIO_LIMIT if gz else payload
            if want > most:
                ratio = f", {want / size:,.0f} times its size" if gz else ""
                bomb = " or the file is a decompression bomb" if gz else ""
                raise CnnlabError(
                    f"{path}: IDX header announces dimensions {list(dims)} ({want:,} bytes{ratio}) but "
                    f"the file is {size:,} bytes; the header is corrupt{bomb}; get the file again"
                )
            limits.check_fits(want, f"{path} ({list(dims)} values)", "free some memory or use a smaller file")
            data = np.empty(want, dtype=np.uint8)
            view = data.data  # the buffer itself, filled in place
            got = 0
            while got < want:
                n = f.readinto(view[got : got + _CHUNK])
                if not n:
                    break
                got += n
            extra = f.read(1) if got == want else b""
    except (OSError, EOFError, zlib.error) as exc:
        raise CnnlabError(f"{path}: cannot read ({exc}); the file is damaged, get it again") from None
    if got < want:
        raise CnnlabError(
            f"{path}: truncated: the header announces {list(dims)} ({want:,} bytes of data) but only "
            f"{got:,} bytes follow; get the file again"
        )
    if extra:
        raise CnnlabError(
            f"{path}: holds more data than the header's dimensions {list(dims)} announce; the file is "
            "corrupt or not an IDX file"
        )
    return data.view(dtype).reshape(dims)


def find_idx(folder: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in `folder` (Debian ships .gz, torchvision unpacks them)."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_pair(
    name: str, split: str, images_path: Path, labels_path: Path, classes: list[str]
) -> ArrayDataset:
    """An images file [N, H, W] and its labels file [N] as one ArrayDataset with a channel axis."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8 or 0 in images.shape[1:]:
        raise CnnlabError(
            f"{images_path}: expected uint8 images [N, H, W], found {images.dtype} {list(images.shape)}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise CnnlabError(
            f"{labels_path}: expected uint8 labels [N], found {labels.dtype} {list(labels.shape)}"
        )
    if labels.shape[0] != images.shape[0]:
        raise CnnlabError(
            f"{labels_path} holds {labels.shape[0]} labels but {images_path} holds {images.shape[0]} "
            "images; the two files do not belong together"
        )
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    check_labels(label_tensor, len(classes), str(labels_path))
    # read_idx filled a buffer of its own: the tensor shares it, no copy.
    image_tensor = torch.from_numpy(images).unsqueeze(1)
    return ArrayDataset(name, split, image_tensor, label_tensor, classes, source=str(images_path.parent))
