"""Each named data set read from small files written in its real format, plus the installed Fashion-MNIST."""

from __future__ import annotations

import dataclasses
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _formats import write_cifar_batch, write_cifar_meta, write_idx
from conftest import FASHION_MNIST_DIR, needs_fashion_mnist

from cnnlab import data
from cnnlab.data import cifar, sources
from cnnlab.data.idx import read_idx
from cnnlab.errors import CnnlabError


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test may see the real user cache or a CNNLAB_DATA_DIR from the environment."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    return cache


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 5, size: int = 6, gz: bool = True) -> dict:
    """Four IDX files as MNIST ships them; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        ext = ".gz" if gz else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    written = write_mnist(tmp_path, gz=gz)
    for split, key in (("train", "train"), ("test", "t10k"), ("val", "t10k")):
        ds = data.load("mnist", split, data_dir=tmp_path)
        images, labels = written[key]
        assert isinstance(ds, data.ArrayDataset)
        assert ds.images.shape == (len(images), 1, 6, 6) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
        assert ds.classes == [str(i) for i in range(10)]


def test_idx_file_is_gzip_by_content_not_name(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "plain-but-gzipped", arr, compress=True)
    assert np.array_equal(read_idx(tmp_path / "plain-but-gzipped"), arr)
    assert (tmp_path / "plain-but-gzipped").read_bytes()[:2] == b"\x1f\x8b"


def test_search_order_and_layouts(tmp_path: Path, _empty_cache: Path) -> None:
    # torchvision's layout under --data-dir, then our own layout in the cache.
    write_mnist(tmp_path / "dd" / "MNIST" / "raw", n_train=7)
    write_mnist(_empty_cache / "mnist", n_train=9)
    assert len(data.load("mnist", "train", data_dir=tmp_path / "dd")) == 7
    assert len(data.load("mnist", "train")) == 9
    # Fashion-MNIST: --data-dir wins over the system copy.
    write_mnist(tmp_path / "fm", n_train=4)
    ds = data.load("fashion-mnist", "train", data_dir=tmp_path / "fm")
    assert len(ds) == 4 and ds.classes[0] == "T-shirt/top"


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path / "env", n_train=3)
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "env"))
    assert len(data.load("mnist", "train")) == 3


def test_missing_sets_say_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(CnnlabError, match=r"not found in .*nowhere.*--data-dir"):
        data.load("mnist", "train", data_dir=nowhere)
    # Fashion-MNIST's message names the Debian package (the system copy hidden for this test).
    hidden = dataclasses.replace(sources.FASHION_MNIST, system_dirs=(tmp_path / "no-system",))
    monkeypatch.setitem(sources.LOADERS, "fashion-mnist", hidden.load)
    with pytest.raises(CnnlabError, match=r"apt-get install dataset-fashion-mnist") as err:
        data.load("fashion-mnist", "test")
    assert "no-system" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CnnlabError, match=r"cifar-10-python.tar.gz"):
        data.load("cifar10", "train", data_dir=nowhere)


def test_half_present_pair_names_missing_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(CnnlabError, match=r"no train-labels-idx1-ubyte"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_download_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(tvd, "MNIST", offline)
    with pytest.raises(CnnlabError, match=r"could not download mnist.*Network is unreachable"):
        data.load("mnist", "train", data_dir=tmp_path / "x", download=True)


def test_download_then_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """download=True hands the fetch to torchvision, then reads what it left in torchvision's layout."""
    import torchvision.datasets as tvd

    calls = []

    def fake_mnist(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        write_mnist(Path(root) / "MNIST" / "raw", n_train=5, gz=False)

    monkeypatch.setattr(tvd, "MNIST", fake_mnist)
    ds = data.load("mnist", "train", data_dir=tmp_path, download=True)
    assert len(ds) == 5 and calls == [(str(tmp_path), True, True)]


def write_cifar(folder: Path, per_batch: int = 3, protocol: int = 2) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    all_images, all_labels = [], []
    for name in [*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES]:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        write_cifar_batch(folder / name, images, labels, protocol=protocol)
        all_images.append(images)
        all_labels.append(labels)
    write_cifar_meta(folder, cifar.CLASSES, protocol=protocol)
    return np.concatenate(all_images), np.concatenate(all_labels)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_batches(tmp_path: Path, protocol: int) -> None:
    images, labels = write_cifar(tmp_path / cifar.FOLDER, protocol=protocol)
    train = data.load("cifar10", "train", data_dir=tmp_path)
    test = data.load("cifar10", "test", data_dir=tmp_path / cifar.FOLDER)  # the folder itself works too
    assert isinstance(train, data.ArrayDataset) and isinstance(test, data.ArrayDataset)
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert torch.equal(train.images, torch.from_numpy(images[:15]))
    assert torch.equal(test.labels, torch.from_numpy(labels[15:]))
    assert train.classes == cifar.CLASSES


def test_cifar_pixel_layout(tmp_path: Path) -> None:
    """The 3072 values are the red plane, then green, then blue, each row-major (the official layout)."""
    folder = tmp_path / cifar.FOLDER
    write_cifar(folder)
    flat = np.zeros((1, 3072), dtype=np.uint8)
    flat[0, 0] = 10  # red, row 0, column 0
    flat[0, 1024 + 33] = 20  # green, row 1, column 1
    flat[0, 2048 + 32 * 31 + 5] = 30  # blue, row 31, column 5
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": flat, b"labels": [3]}, protocol=2))
    img = data.load("cifar10", "test", data_dir=tmp_path).images[0]
    assert (int(img[0, 0, 0]), int(img[1, 1, 1]), int(img[2, 31, 5])) == (10, 20, 30)
    assert int(img.sum()) == 60


class _Payload:
    """Unpickling this would call open(marker, 'w') and create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("where", ["whole", "inside", "meta"])
def test_hostile_pickle_does_not_run(tmp_path: Path, where: str) -> None:
    folder = tmp_path / cifar.FOLDER
    write_cifar(folder)
    marker = tmp_path / "pwned"
    evil = _Payload(marker)
    if where == "whole":
        (folder / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=2))
    elif where == "inside":
        batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"batch_label": evil}
        (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    else:
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [evil]}, protocol=2))
    # The payload really works with the standard unpickler (so refusing it is what saves us)...
    pickle.loads(pickle.dumps(evil))
    assert marker.exists()
    marker.unlink()
    # ... and ours refuses it.
    with pytest.raises(CnnlabError, match=r"refusing to load"):
        data.load("cifar10", "train", data_dir=tmp_path)
    assert not marker.exists()


def test_digits_split_is_fixed_and_scaled() -> None:
    train, test = data.load("digits", "train"), data.load("digits", "test")
    assert isinstance(train, data.ArrayDataset) and isinstance(test, data.ArrayDataset)
    assert len(train) + len(test) == 1797
    assert abs(len(test) / 1797 - sources.DIGITS_TEST_FRACTION) < 0.01
    assert train.images.shape[1:] == (1, 8, 8) and int(train.images.max()) == 255
    assert torch.equal(data.load("digits", "train").images, train.images)  # same split every time
    from sklearn.datasets import load_digits

    # Train and test together are exactly sklearn's images, scaled by 255/16, with their labels.
    bunch = load_digits()
    bundle = np.rint(bunch.images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    theirs = sorted(zip(map(bytes, bundle), bunch.target.tolist(), strict=True))
    ours_images = torch.cat([train.images, test.images]).flatten(1).numpy()
    ours_labels = torch.cat([train.labels, test.labels]).tolist()
    assert sorted(zip(map(bytes, ours_images), ours_labels, strict=True)) == theirs


def test_names_and_unknown() -> None:
    assert data.names()[:4] == ["fashion-mnist", "mnist", "cifar10", "digits"]
    assert "folder:PATH" in data.names()
    with pytest.raises(CnnlabError, match=r"unknown data set 'imagenet'.*fashion-mnist"):
        data.load("imagenet", "train")
    with pytest.raises(CnnlabError, match=r"unknown split"):
        data.load("digits", "validation")
    with pytest.raises(CnnlabError, match=r"needs a path"):
        data.load("folder:", "train")


def test_identity_changes_with_content(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    a = data.load("mnist", "train", data_dir=tmp_path)
    ident = a.identity()
    assert {"name": "mnist", "split": "train", "count": 12}.items() <= ident.items()
    b = a.subset(list(range(len(a))))
    b.images[0, 0, 0, 0] ^= 1
    assert b.identity()["sha256"] != ident["sha256"]
    assert a.subset(list(range(len(a)))).identity()["sha256"] == ident["sha256"]


@needs_fashion_mnist
def test_real_fashion_mnist() -> None:
    train, test = data.load("fashion-mnist", "train"), data.load("fashion-mnist", "test")
    assert isinstance(train, data.ArrayDataset) and isinstance(test, data.ArrayDataset)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.source == FASHION_MNIST_DIR
    # The first training label in the real file (compare with gzip + numpy, independently of read_idx).
    with gzip.open(Path(FASHION_MNIST_DIR) / "train-labels-idx1-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=8)
    assert torch.equal(train.labels, torch.from_numpy(raw.astype(np.int64)))
