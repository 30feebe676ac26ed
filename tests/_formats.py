"""Writers of the real file formats, for tests: small IDX files and CIFAR-10 python batches.

cnnlab itself only reads these formats; tests write them to exercise the readers on real bytes.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np

# The IDX type codes (LeCun's MNIST page): unsigned byte, signed byte, short, int, float, double; big-endian.
IDX_CODES = {"|u1": 0x08, "|i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None) -> None:
    """Write an IDX file (gzipped when the name ends in .gz, or as `compress` says)."""
    path = Path(path)
    dt = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    code = IDX_CODES.get(dt.str)
    if code is None:
        raise ValueError(f"IDX cannot store {array.dtype}")
    blob = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += np.ascontiguousarray(array, dtype=dt).tobytes()
    gz = path.suffix == ".gz" if compress is None else compress
    with gzip.open(path, "wb") if gz else open(path, "wb") as f:
        f.write(blob)


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int], protocol: int = 2) -> None:
    """A CIFAR-10 python batch in the official layout (bytes keys, as Python 2 wrote them)."""
    data = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    obj = {
        b"batch_label": b"written by the tests",
        b"labels": [int(v) for v in labels],
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(data))],
    }
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar_meta(folder: Path, classes: list[str], protocol: int = 2) -> None:
    obj = {b"num_cases_per_batch": 10000, b"label_names": [c.encode() for c in classes], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(obj, protocol=protocol))
