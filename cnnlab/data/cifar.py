"""CIFAR-10's python batches (`cifar-10-batches-py/`), read with an unpickler that cannot run code.

The official files are Python 2 pickles of dicts: `data` a uint8 numpy array [10000, 3072] (1024 red,
then 1024 green, then 1024 blue values, each plane row-major), `labels` a list of ints, plus
`batch_label` and `filenames`; `batches.meta` holds `label_names`. A pickle can name any importable
callable and call it while loading, so a downloaded batch is only as safe as its unpickler: ours resolves
only the few numpy globals that rebuild an array and refuses everything else.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.dataset import ArrayDataset, check_labels
from cnnlab.errors import CnnlabError

try:  # numpy >= 2 moved numpy.core to numpy._core; old pickles still name numpy.core.
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCHES = ["test_batch"]
FOLDER = "cifar-10-batches-py"

# Every global a CIFAR batch needs: numpy's array reconstructors (old and new module names, pickle
# protocols 2 and 5) and codecs.encode, which Python 3 uses to pickle bytes under protocol 2.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _mod in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_mod}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_mod}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_mod}.numeric", "_frombuffer")] = _numeric._frombuffer  # type: ignore[attr-defined]


class _Refused(Exception):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, tuples, bytes, strings, numbers and numpy arrays; nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def load_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle as a dict with str keys; a hostile or broken file is a CnnlabError."""
    if not path.is_file():
        raise CnnlabError(f"{path} is missing; the CIFAR-10 folder is incomplete, get it again")
    blob = path.read_bytes()
    if not blob:
        raise CnnlabError(f"{path} is empty (0 bytes): delete it and get CIFAR-10 again")
    try:
        obj = RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except _Refused as exc:
        raise CnnlabError(
            f"{path} refers to {exc}, which a CIFAR-10 batch never holds; refusing to load it "
            "(the file may be malicious): get CIFAR-10 from its official site"
        ) from None
    except Exception as exc:  # any malformed pickle: truncated, wrong opcodes, bad array state
        raise CnnlabError(f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise CnnlabError(f"{path} holds a {type(obj).__name__}, not the dict of a CIFAR-10 batch")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


MAX_CLASSES = 100_000  # label_names longer than this is damaged (CIFAR-10 has 10, CIFAR-100 100)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 3, 32, 32], labels int64 [n]) from one data batch."""
    batch = load_pickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise CnnlabError(
                f"{path} has no '{key}' entry (keys: {sorted(batch)}); not a CIFAR-10 batch or damaged"
            )
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = type(data).__name__
        if isinstance(data, np.ndarray):  # the dtype only when it is the problem
            shape = ("" if data.dtype == np.uint8 else f"{data.dtype} ") + str(list(data.shape))
        raise CnnlabError(f"{path}: 'data' should be a uint8 array [n, 3072], found {shape}")
    return data.reshape(-1, 3, 32, 32), _labels(path, labels, data.shape[0])


def _labels(path: Path, labels: Any, n: int) -> np.ndarray:
    """The labels as int64 [n]: a flat list (or 1-D integer array) of whole numbers, checked before any
    conversion. numpy would truncate 3.7 to 3, and would expand a pickle's shared nested lists (a few
    hundred bytes can describe 2^40 elements) into memory before any shape check."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise CnnlabError(
                f"{path}: 'labels' should be a list of integers, found a {labels.dtype} array "
                f"{list(labels.shape)}"
            )
        count = labels.shape[0]
    elif isinstance(labels, (list, tuple)):
        count = len(labels)
    else:
        raise CnnlabError(f"{path}: 'labels' should be a list of integers, found {type(labels).__name__}")
    if count != n:
        raise CnnlabError(f"{path} holds {n} images but {count} labels; the batch is damaged")
    if isinstance(labels, (list, tuple)):
        for v in labels:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                what = f"{v!r}" if isinstance(v, (float, np.floating)) else f"a {type(v).__name__}"
                raise CnnlabError(
                    f"{path}: 'labels' holds {what}, not a whole number; the batch is damaged "
                    "(labels are class indices)"
                )
    try:
        return np.asarray(labels, dtype=np.int64)
    except OverflowError:  # a label beyond 64 bits
        raise CnnlabError(f"{path}: 'labels' is not a list of integers (one is beyond 64 bits)") from None


def read_classes(folder: Path) -> list[str]:
    """Class names from `batches.meta`, or the official list when the file is absent."""
    meta_path = folder / "batches.meta"
    if not meta_path.exists():
        return list(CLASSES)
    meta = load_pickle(meta_path)
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)):
        raise CnnlabError(f"{meta_path} has no 'label_names' list; the file is damaged")
    # Each name must be text, checked before any is turned into a string: str() of shared nested lists
    # (a few hundred pickle bytes) would expand to terabytes.
    if len(names) > MAX_CLASSES or not all(isinstance(n, (str, bytes)) and len(n) <= 1000 for n in names):
        raise CnnlabError(
            f"{meta_path}: 'label_names' is not a list of class names (text, at most {MAX_CLASSES}); "
            "the file is damaged"
        )
    return [_text(n) for n in names]


def load_cifar10(folder: Path, split: str) -> ArrayDataset:
    """The train (5 batches, 50,000 images) or test (10,000) split of a `cifar-10-batches-py` folder."""
    classes = read_classes(folder)
    parts = [read_batch(folder / n) for n in (TRAIN_BATCHES if split == "train" else TEST_BATCHES)]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    check_labels(labels, len(classes), str(folder))
    return ArrayDataset("cifar10", split, images, labels, classes, source=str(folder))
