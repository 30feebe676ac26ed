"""Every broken input the data layer can meet is a one-line CnnlabError naming the file and the problem."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from _formats import write_cifar_batch, write_cifar_meta, write_idx
from PIL import Image

from cnnlab import data
from cnnlab.data import cifar
from cnnlab.data.idx import read_idx
from cnnlab.errors import CnnlabError


def one_line(err: pytest.ExceptionInfo[CnnlabError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------------------------- IDX


def test_idx_zero_byte(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"")
    with pytest.raises(CnnlabError, match=r"x is empty \(0 bytes\)") as err:
        read_idx(tmp_path / "x")
    one_line(err)


@pytest.mark.parametrize(
    "magic", [b"\x01\x00\x08\x03", b"\x00\x00\x07\x03", b"\x00\x00\x08\x00", b"PK\x03\x04"]
)
def test_idx_bad_magic(tmp_path: Path, magic: bytes) -> None:
    (tmp_path / "bad").write_bytes(magic + b"\x00" * 64)
    with pytest.raises(CnnlabError, match=r"bad IDX magic number"):
        read_idx(tmp_path / "bad")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_absurd_dimensions_are_not_allocated(tmp_path: Path, gz: bool) -> None:
    """A header announcing 2^32 x 2^32 x 2^32 bytes must fail on the size check, not on a huge read."""
    blob = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\x00" * 100
    path = tmp_path / ("big.gz" if gz else "big")
    path.write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(CnnlabError, match=r"announces dimensions.*header is corrupt") as err:
        read_idx(path)
    assert str(path) in one_line(err)


def test_idx_truncated_and_trailing(tmp_path: Path) -> None:
    arr = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / "ok", arr)
    blob = (tmp_path / "ok").read_bytes()
    (tmp_path / "short").write_bytes(blob[:-7])
    (tmp_path / "long").write_bytes(blob + b"extra")
    (tmp_path / "short.gz").write_bytes(gzip.compress(blob[:-7]))
    (tmp_path / "header-only").write_bytes(blob[:6])
    with pytest.raises(CnnlabError, match=r"truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(CnnlabError, match=r"truncated"):
        read_idx(tmp_path / "short.gz")
    with pytest.raises(CnnlabError, match=r"truncated IDX header"):
        read_idx(tmp_path / "header-only")
    with pytest.raises(CnnlabError, match=r"more data than"):
        read_idx(tmp_path / "long")
    # A gzip stream cut in the middle.
    gz = gzip.compress(blob)
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(CnnlabError, match=r"cut.gz"):
        read_idx(tmp_path / "cut.gz")


def _mnist(folder: Path, n_images: int = 4, n_labels: int = 4, label_value: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((n_images, 5, 5), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(n_labels, label_value, np.uint8))


def test_label_count_differs_from_image_count(tmp_path: Path) -> None:
    _mnist(tmp_path, n_images=4, n_labels=5)
    with pytest.raises(CnnlabError, match=r"holds 5 labels but .*train-images.* holds 4 images") as err:
        data.load("mnist", "train", data_dir=tmp_path)
    one_line(err)


def test_labels_out_of_range(tmp_path: Path) -> None:
    _mnist(tmp_path, label_value=12)
    with pytest.raises(CnnlabError, match=r"labels range from 12 to 12, expected 0..9"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_idx_wrong_rank(tmp_path: Path) -> None:
    _mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 25), np.uint8))
    with pytest.raises(CnnlabError, match=r"expected uint8 images \[N, H, W\]"):
        data.load("mnist", "train", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------- CIFAR


def _cifar(tmp_path: Path) -> Path:
    folder = tmp_path / cifar.FOLDER
    folder.mkdir()
    for name in [*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES]:
        write_cifar_batch(folder / name, np.zeros((2, 3, 32, 32), np.uint8), [1, 2])
    write_cifar_meta(folder, cifar.CLASSES)
    return folder


@pytest.mark.parametrize("key", [b"data", b"labels"])
def test_cifar_batch_missing_key(tmp_path: Path, key: bytes) -> None:
    folder = _cifar(tmp_path)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"batch_label": b"x"}
    del batch[key]
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(CnnlabError, match=f"data_batch_3 has no '{key.decode()}' entry") as err:
        data.load("cifar10", "train", data_dir=tmp_path)
    one_line(err)


def test_cifar_zero_byte_truncated_and_wrong_shapes(tmp_path: Path) -> None:
    folder = _cifar(tmp_path)
    (folder / "test_batch").write_bytes(b"")
    with pytest.raises(CnnlabError, match=r"test_batch is empty \(0 bytes\)"):
        data.load("cifar10", "test", data_dir=tmp_path)
    good = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    (folder / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(CnnlabError, match=r"test_batch is not a readable CIFAR-10 batch"):
        data.load("cifar10", "test", data_dir=tmp_path)
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(CnnlabError, match=r"'data' should be a uint8 array \[n, 3072\], found \[2, 1024\]"):
        data.load("cifar10", "test", data_dir=tmp_path)
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    )
    with pytest.raises(CnnlabError, match=r"holds 2 images but 1 labels"):
        data.load("cifar10", "test", data_dir=tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(CnnlabError, match=r"holds a list, not the dict"):
        data.load("cifar10", "test", data_dir=tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(CnnlabError, match=r"data_batch_4 is missing"):
        data.load("cifar10", "train", data_dir=tmp_path)


# -------------------------------------------------------------------------------------------- folders


def _png(path: Path, color: tuple[int, int, int] = (200, 10, 10), size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)


def _jpeg(path: Path, size: int = 24) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)
    return path.read_bytes()


def _tree(root: Path) -> Path:
    for split in ("train", "val"):
        for cls, color in (("cat", (200, 0, 0)), ("dog", (0, 200, 0))):
            for i in range(2):
                _png(root / split / cls / f"{i}.png", color)
    return root


BAD_FILES = {
    "zero.png": lambda p: p.write_bytes(b""),
    "noise.jpg": lambda p: p.write_bytes(np.random.default_rng(1).bytes(500)),
    "truncated.jpg": lambda p: p.write_bytes(_jpeg(p)[:300]),
    "truncated.png": lambda p: (_png(p, size=64), p.write_bytes(p.read_bytes()[:-30])),
    "text.png": lambda p: p.write_text("not an image"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_image_found_at_load_time(tmp_path: Path, name: str) -> None:
    root = _tree(tmp_path / "imgs")
    bad = root / "train" / "dog" / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    BAD_FILES[name](bad)
    with pytest.raises(CnnlabError, match=r"unreadable image.*--skip-bad-images") as err:
        data.load(f"folder:{root}", "train")
    assert str(bad) in one_line(err)
    ds = data.load(f"folder:{root}", "train", skip_bad_images=True)
    assert isinstance(ds, data.FolderDataset)
    assert ds.skipped == [str(bad)] and len(ds) == 4 and str(bad) in ds.skip_reasons
    assert all(path != str(bad) for path, _ in ds.samples)


def test_skip_counts_every_bad_file(tmp_path: Path) -> None:
    root = _tree(tmp_path / "imgs")
    for name, make in BAD_FILES.items():
        make(root / "train" / "cat" / name)
    with pytest.raises(CnnlabError, match=f"\\({len(BAD_FILES)} unreadable files in all\\)"):
        data.load(f"folder:{root}", "train")
    ds = data.load(f"folder:{root}", "train", skip_bad_images=True)
    assert isinstance(ds, data.FolderDataset) and len(ds.skipped) == len(BAD_FILES)
    assert ds.identity()["skipped"] == len(BAD_FILES)


def test_class_of_only_bad_images(tmp_path: Path) -> None:
    root = _tree(tmp_path / "imgs")
    for p in (root / "train" / "cat").iterdir():
        p.write_bytes(b"")
    with pytest.raises(CnnlabError, match=r"cat: every image in it is unreadable"):
        data.load(f"folder:{root}", "train", skip_bad_images=True)


def test_folder_structure_errors(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match=r"does not exist"):
        data.load(f"folder:{tmp_path / 'nope'}", "train")
    root = _tree(tmp_path / "imgs")
    (root / "train" / "empty").mkdir()
    (root / "train" / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(CnnlabError, match=r"class folder .*empty has no images") as err:
        data.load(f"folder:{root}", "train")
    one_line(err)
    flat = tmp_path / "flat"
    _png(flat / "train" / "a.png")
    with pytest.raises(CnnlabError, match=r"has no class folders \(1 images lie directly inside"):
        data.load(f"folder:{flat}", "train")
    with pytest.raises(CnnlabError, match=r"has no val/ or test/ folder"):
        data.load(f"folder:{flat}", "val")
    (tmp_path / "bare" / "train").mkdir(parents=True)
    with pytest.raises(CnnlabError, match=r"has no class folders; expected"):
        data.load(f"folder:{tmp_path / 'bare'}", "train")
    _png(root / "val" / "bird" / "0.png")
    with pytest.raises(CnnlabError, match=r"class folders that .*train lacks: bird"):
        data.load(f"folder:{root}", "val")


def test_image_broken_after_load_fails_in_worker_with_its_name(tmp_path: Path) -> None:
    """A file that breaks between the check and the decode is reported from the worker, by name."""
    root = _tree(tmp_path / "imgs")
    ds = data.load(f"folder:{root}", "train")
    assert isinstance(ds, data.FolderDataset)
    victim = Path(ds.samples[2][0])
    victim.write_bytes(b"garbage")
    stats = data.compute_stats(
        data.ArrayDataset("x", "train", torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2), ["a"])
    )
    aug = data.AugmentConfig(8, resize=8, random_crop=False, flip=False)
    for workers in (0, 1):
        loader = data.BatchLoader(
            ds, 4, train=True, aug=aug, stats=stats, seed=0, device="cpu", num_workers=workers
        )
        with pytest.raises(CnnlabError, match=r"cannot decode the image") as err:
            list(loader.epoch(0))
        assert str(victim) in one_line(err)
