"""Where each named data set lives on disk, how it is read, and what to say when it is not there.

Search order for a named set: `--data-dir` (or $CNNLAB_DATA_DIR), then the system location (Debian's
`dataset-fashion-mnist` package for Fashion-MNIST), then the user cache ($CNNLAB_CACHE, else
$XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab), which is also where `download=True` puts files. Nothing
touches the network unless `download=True`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import cifar
from cnnlab.data.dataset import ArrayDataset, canonical_split
from cnnlab.data.folder import FolderDataset
from cnnlab.data.idx import find_idx, load_idx_pair
from cnnlab.errors import CnnlabError, did_you_mean

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(i) for i in range(10)]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# scikit-learn's digits have no official split: a fixed 20% test set drawn with this seed.
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2
FOLDER_PREFIX = "folder:"


def cache_dir() -> Path:
    """The user cache for data sets: $CNNLAB_CACHE, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab."""
    if os.environ.get("CNNLAB_CACHE"):
        return Path(os.environ["CNNLAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnlab"


def _user_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    d = data_dir if data_dir is not None else os.environ.get("CNNLAB_DATA_DIR")
    return Path(d).expanduser() if d else None


@dataclass(frozen=True)
class IdxSet:
    """An MNIST-format data set: where to look, what to call the classes, how to fetch it."""

    name: str
    classes: list[str]
    subdirs: tuple[str, ...]  # tried under --data-dir and the cache (ours, then torchvision's layout)
    system_dirs: tuple[Path, ...]
    torchvision_class: str
    how_to_get: str

    def candidates(self, data_dir: Path | None) -> list[Path]:
        dirs = [data_dir, *(data_dir / s for s in self.subdirs)] if data_dir else []
        dirs += list(self.system_dirs)
        dirs += [cache_dir() / s for s in self.subdirs]
        return dirs

    def load(self, split: str, data_dir: Path | None, download: bool) -> ArrayDataset:
        img_stem, lbl_stem = IDX_FILES[split]
        looked = self.candidates(data_dir)
        for folder in looked:
            images, labels = find_idx(folder, img_stem), find_idx(folder, lbl_stem)
            if images and labels:
                return load_idx_pair(self.name, split, images, labels, self.classes)
            present = images or labels
            if present is not None:
                missing = lbl_stem if images else img_stem
                raise CnnlabError(f"{folder} has {present.name} but no {missing}[.gz]; get it too")
        if download:
            root = data_dir or cache_dir()
            _download(self.name, lambda: _torchvision_idx(self.torchvision_class, root, split))
            return self.load(split, data_dir, download=False)
        raise CnnlabError(
            f"{self.name} {split} files ({img_stem}[.gz], {lbl_stem}[.gz]) not found in "
            f"{', '.join(map(str, looked))}; {self.how_to_get}"
        )


FASHION_MNIST = IdxSet(
    "fashion-mnist",
    FASHION_CLASSES,
    ("fashion-mnist", "FashionMNIST/raw"),
    (FASHION_MNIST_SYSTEM_DIR,),
    "FashionMNIST",
    "install them with `apt-get install dataset-fashion-mnist`, pass --data-dir DIR holding them, "
    "or add --download (needs a network)",
)
MNIST = IdxSet(
    "mnist",
    MNIST_CLASSES,
    ("mnist", "MNIST/raw"),
    (),
    "MNIST",
    "put the four MNIST IDX files in a folder and pass --data-dir DIR, or add --download (needs a network)",
)


def _download(name: str, fetch: Callable[[], object]) -> None:
    try:
        fetch()
    except Exception as exc:  # no network, proxy, checksum, disk full: all mean the same to the user
        raise CnnlabError(
            f"could not download {name} through torchvision ({type(exc).__name__}: {exc}); "
            "get the files by hand and pass --data-dir DIR"
        ) from None


def _torchvision_idx(class_name: str, root: Path, split: str) -> None:
    import torchvision.datasets as tvd  # only when downloading

    getattr(tvd, class_name)(str(root), train=split == "train", download=True)


def _torchvision_cifar(root: Path) -> None:
    # Only the archive helper: torchvision's CIFAR10 class would then unpickle the batches unrestricted.
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)


def load_cifar10(split: str, data_dir: Path | None, download: bool) -> ArrayDataset:
    looked = ([data_dir / cifar.FOLDER, data_dir] if data_dir else []) + [cache_dir() / cifar.FOLDER]
    for folder in looked:
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            return cifar.load_cifar10(folder, split)
    if download:
        root = data_dir or cache_dir()
        _download("cifar10", lambda: _torchvision_cifar(root))
        return load_cifar10(split, data_dir, download=False)
    raise CnnlabError(
        f"cifar10 not found (looked for {cifar.FOLDER}/data_batch_1..5 and test_batch in "
        f"{', '.join(map(str, looked))}); get cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html, extract it into DIR and pass --data-dir DIR, "
        "or add --download (needs a network)"
    )


@functools.cache
def _digits_bundle() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [1797, 1, 8, 8], targets): the CSV that scikit-learn bundles, read directly when
    it is where load_digits reads it (importing sklearn.datasets costs seconds: it pulls in scipy)."""
    spec = importlib.util.find_spec("sklearn")
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    table = np.loadtxt(csv, delimiter=",") if csv is not None and csv.is_file() else None
    if table is not None and table.shape == (1797, 65):
        pixels, targets = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        from sklearn.datasets import load_digits as sk_digits

        bunch = sk_digits()
        pixels, targets = bunch.images, bunch.target
    images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, targets.astype(np.int64)


def load_digits(split: str, data_dir: Path | None, download: bool) -> ArrayDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), 0..16 scaled to 0..255."""
    images, targets = _digits_bundle()
    order = np.random.RandomState(DIGITS_SEED).permutation(len(images))
    n_test = round(len(images) * DIGITS_TEST_FRACTION)
    pick = np.sort(order[:n_test] if split == "test" else order[n_test:])
    return ArrayDataset(
        "digits",
        split,
        torch.from_numpy(images[pick]),
        torch.from_numpy(targets[pick]),
        MNIST_CLASSES,
        source="sklearn.datasets.load_digits",
    )


LOADERS: dict[str, Callable[[str, Path | None, bool], ArrayDataset]] = {
    "fashion-mnist": FASHION_MNIST.load,
    "mnist": MNIST.load,
    "cifar10": load_cifar10,
    "digits": load_digits,
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}


def names() -> list[str]:
    """The data sets `load` knows, plus the folder form."""
    return [*LOADERS, FOLDER_PREFIX + "PATH"]


def load(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    skip_bad_images: bool = False,
) -> ArrayDataset | FolderDataset:
    """A data set by name: an ArrayDataset in memory, or a FolderDataset for `folder:PATH`."""
    split = canonical_split(split)
    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX) :]
        if not path:
            raise CnnlabError("--dataset folder: needs a path, e.g. folder:/data/imagenet")
        return FolderDataset(path, split, skip_bad_images=skip_bad_images)
    key = ALIASES.get(name.lower(), name.lower())
    if key not in LOADERS:
        hint = did_you_mean(name, LOADERS)
        raise CnnlabError(f"unknown data set {name!r}{hint}; choose one of: {', '.join(names())}")
    if _SHARED is None:
        return LOADERS[key](split, _user_dir(data_dir), download)
    memo = (key, split, str(_user_dir(data_dir)))
    if memo not in _SHARED:
        _SHARED[memo] = LOADERS[key](split, _user_dir(data_dir), download)
    return _SHARED[memo]


# In-memory data sets read once and handed to every `load` inside `shared_loads()` (None: off).
_SHARED: dict[tuple[str, str, str], ArrayDataset] | None = None


@contextlib.contextmanager
def shared_loads() -> Iterator[None]:
    """Within it, each in-memory data set is read from its files once and the same object returned to
    every later `load` of it: for one process that trains many runs on the same data (`cnnlab reproduce`).
    Safe because nothing changes a loaded ArrayDataset (subsets and splits are new objects)."""
    global _SHARED
    outer = _SHARED
    _SHARED = {} if outer is None else outer
    try:
        yield
    finally:
        _SHARED = outer
