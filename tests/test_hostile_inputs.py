"""Hostile and malformed input: impossible flags, broken data files, wrong models.

Every case in the table must end the same way: exit code 2, exactly one stderr line starting
`cnnlab: error:`, no traceback, and no run folder left behind (so nothing can pass for a run). The cases
run in-process through `cnnlab.cli.main`; a few run as real subprocesses to prove the same end to end.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from _formats import write_cifar_batch, write_idx
from _reliability import (
    TINY_BASE,
    assert_no_run_left,
    assert_one_line_error,
    run_cli,
    subprocess_env,
    write_idx_set,
)
from PIL import Image

from cnnlab import models
from cnnlab.data import cifar, read_image
from cnnlab.errors import CnnlabError

Setup = Callable[[Path], list[str]]  # builds what the case needs under tmp, returns the extra argv


def flags(*argv: str) -> Setup:
    return lambda tmp: list(argv)


# ------------------------------------------------------------------------------------------ IDX files


def idx(mutate: Callable[[Path], None]) -> Setup:
    """Valid MNIST-named IDX files, then `mutate(folder)` breaks one."""

    def setup(tmp: Path) -> list[str]:
        folder = write_idx_set(tmp / "mnist")
        mutate(folder)
        return ["--dataset", "mnist", "--data-dir", str(folder)]

    return setup


IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def _rewrite(name: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(fn((folder / name).read_bytes()))


def _array(name: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda folder: write_idx(folder / name, array)


def _gzip_garbage(folder: Path) -> None:
    (folder / IMAGES).unlink()
    whole = gzip.compress((folder / LABELS).read_bytes())
    (folder / (IMAGES + ".gz")).write_bytes(whole[:10] + b"\xff" * 40)  # a gzip header, then no deflate data


# --------------------------------------------------------------------------------------- CIFAR batches


def cifar_case(mutate: Callable[[Path], None]) -> Setup:
    def setup(tmp: Path) -> list[str]:
        folder = tmp / cifar.FOLDER
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for name in (*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES):
            write_cifar_batch(
                folder / name, rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), [0, 1, 2, 3]
            )
        mutate(folder)
        return ["--dataset", "cifar10", "--data-dir", str(tmp)]

    return setup


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _batch(obj: object) -> Callable[[Path], None]:
    return lambda folder: _dump(folder / "data_batch_2", obj)


def _cifar(images: np.ndarray, labels: list[int]) -> dict[bytes, object]:
    return {b"data": images, b"labels": labels}


def _cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


# -------------------------------------------------------------------------------------- image folders


def folder_case(mutate: Callable[[Path], None]) -> Setup:
    def setup(tmp: Path) -> list[str]:
        root = tmp / "images"
        for split in ("train", "val"):
            for k, name in enumerate(("ant", "bee")):
                (root / split / name).mkdir(parents=True)
                for i in range(3):
                    Image.new("RGB", (10, 10), (90 * k, 30 * i, 0)).save(root / split / name / f"{i}.png")
        mutate(root)
        return ["--dataset", f"folder:{root}"]

    return setup


def _truncated_png(root: Path) -> None:
    path = root / "train" / "bee" / "1.png"
    path.write_bytes(path.read_bytes()[:40])


def _blocker_out(tmp: Path) -> list[str]:
    (tmp / "a-file").write_text("not a folder")
    return ["--out", str(tmp / "a-file" / "run")]


CASES: dict[str, Setup] = {
    # -- impossible flag values
    "negative epochs": flags("--epochs", "-1"),
    "zero epochs": flags("--epochs", "0"),
    "batch size 0": flags("--batch-size", "0"),
    "lr nan": flags("--lr", "nan"),
    "lr inf": flags("--lr", "inf"),
    "lr negative": flags("--lr", "-0.1"),
    "momentum negative": flags("--momentum", "-1"),
    "momentum nan": flags("--momentum", "nan"),
    "momentum 1.5": flags("--momentum", "1.5"),
    "nesterov without momentum": flags("--nesterov", "--momentum", "0"),
    "weight decay negative": flags("--weight-decay=-1e-4"),
    "weight decay nan": flags("--weight-decay", "nan"),
    "pca std negative": flags("--pca-std", "-0.1"),
    "pca std nan": flags("--pca-std", "nan"),
    "label smoothing 2": flags("--label-smoothing", "2"),
    "warmup 1.5": flags("--warmup", "1.5"),
    "patience 0": flags("--patience", "0"),
    "max drops negative": flags("--max-drops", "-1"),
    "workers negative": flags("--workers", "-1"),
    "pad negative": flags("--pad", "-1"),
    "resize 0": flags("--resize", "0"),
    "limit train 0": flags("--limit-train", "0"),
    "limit val negative": flags("--limit-val", "-3"),
    "stop after 0": flags("--stop-after", "0"),
    "input size 0": flags("--input-size", "0"),
    "seed beyond 64 bits": flags("--seed", str(2**64)),
    "dropout 1.5": flags("--dropout", "1.5"),
    "dropout nan": flags("--dropout", "nan"),
    "not a number": flags("--epochs", "three"),
    "unknown model": flags("--model", "alexnet_9000"),
    "unknown dataset": flags("--dataset", "imagenet-22k"),
    "unknown activation": flags("--activation", "swish"),
    "unknown init": flags("--init", "xavier"),
    "unknown recipe": flags("--recipe", "magic"),
    "unknown schedule": flags("--schedule", "cosine"),
    "unknown val views": flags("--val-views", "twelve"),
    "unknown switch": flags("--turbo"),
    "unknown model option": flags("--model-opt", "wings=2"),
    "model option not a number": flags("--model-opt", "width=wide"),
    "input too small for the model": flags("--model", "alexnet", "--input-size", "32"),
    "missing data dir": flags("--dataset", "mnist", "--data-dir", "/nonexistent/cnnlab"),
    "missing image folder": flags("--dataset", "folder:/nonexistent/cnnlab"),
    "folder: without a path": flags("--dataset", "folder:"),
    "output under a file": _blocker_out,
    "resume with nothing to resume": flags("--resume"),
    # -- IDX files
    "idx zero bytes": idx(lambda f: (f / IMAGES).write_bytes(b"")),
    "idx truncated": idx(_rewrite(IMAGES, lambda b: b[: len(b) // 2])),
    "idx trailing bytes": idx(_rewrite(LABELS, lambda b: b + b"\x00" * 7)),
    "idx wrong magic": idx(_rewrite(IMAGES, lambda b: b"\x08\x08" + b[2:])),
    "idx huge dimensions": idx(_rewrite(IMAGES, lambda b: b[:4] + struct.pack(">3I", *[2**31] * 3) + b[16:])),
    "idx header cut short": idx(lambda f: (f / IMAGES).write_bytes(bytes([0, 0, 8, 3, 0, 0]))),
    "idx count mismatch": idx(_array(LABELS, np.zeros(47, np.uint8))),
    "idx labels out of range": idx(_array(LABELS, np.full(48, 200, np.uint8))),
    "idx float images": idx(_array(IMAGES, np.zeros((48, 8, 8), np.float32))),
    "idx images of rank 2": idx(_array(IMAGES, np.zeros((48, 64), np.uint8))),
    "idx zero-sized images": idx(_array(IMAGES, np.zeros((48, 0, 0), np.uint8))),
    "idx corrupt gzip": idx(_gzip_garbage),
    "idx labels missing": idx(lambda f: (f / LABELS).unlink()),
    # -- CIFAR batches
    "cifar batch missing labels": cifar_case(_batch({b"data": np.zeros((4, 3072), np.uint8)})),
    "cifar data of the wrong shape": cifar_case(_batch(_cifar(np.zeros((4, 100), np.uint8), [0] * 4))),
    "cifar data not uint8": cifar_case(_batch(_cifar(np.zeros((4, 3072)), [0] * 4))),
    "cifar label beyond 64 bits": cifar_case(_batch(_cifar(np.zeros((1, 3072), np.uint8), [2**70]))),
    "cifar labels and images differ": cifar_case(_batch(_cifar(np.zeros((4, 3072), np.uint8), [1]))),
    "cifar batch is a list": cifar_case(_batch([1, 2, 3])),
    "cifar truncated pickle": cifar_case(lambda f: _cut(f / "data_batch_4", 99)),
    "cifar zero-byte batch": cifar_case(lambda f: (f / "test_batch").write_bytes(b"")),
    "cifar missing batch": cifar_case(lambda f: (f / "data_batch_5").unlink()),
    "cifar meta names not a list": cifar_case(lambda f: _dump(f / "batches.meta", {b"label_names": 3})),
    # -- image folders
    "folder text file named .png": folder_case(lambda r: (r / "train" / "ant" / "0.png").write_text("hello")),
    "folder truncated png": folder_case(_truncated_png),
    "folder zero-byte jpg": folder_case(lambda r: (r / "val" / "bee" / "x.jpg").write_bytes(b"")),
    "folder class without images": folder_case(lambda r: (r / "train" / "cow").mkdir()),
    "folder val class unknown to train": folder_case(lambda r: (r / "val" / "bee").rename(r / "val" / "yak")),
    "folder without val": folder_case(lambda r: shutil.rmtree(r / "val")),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_train_refuses_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    out = tmp_path / "run"
    argv = ["train", *TINY_BASE, "--epochs", "1", "--out", str(out), *CASES[case](tmp_path)]
    code, _, err = run_cli(argv, capsys)
    line = assert_one_line_error(code, err)
    assert len(line) < 600, line
    assert_no_run_left(out)


def test_the_table_is_wide() -> None:
    assert len(CASES) >= 30


def test_an_existing_folder_is_neither_used_nor_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        line = assert_one_line_error(*run_cli(["train", *TINY_BASE, "--out", str(out), *extra], capsys)[::2])
        assert str(out) in line
        assert [p.name for p in out.iterdir()] == ["notes.txt"] and (
            out / "notes.txt"
        ).read_text() == "keep me"


def test_overwrite_deletes_nothing_for_a_run_that_cannot_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(
        ["train", *TINY_BASE, "--out", str(out), "--epochs", "1", "--stop-after", "1"], capsys
    )
    assert code == 0, err
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for bad in (
        ["--dropout", "1.5"],
        ["--activation", "swish"],
        ["--model", "alexnet", "--input-size", "32"],
    ):
        argv = ["train", *TINY_BASE, "--out", str(out), "--overwrite", *bad]
        assert_one_line_error(*run_cli(argv, capsys)[::2])
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


OTHER_COMMANDS: dict[str, Setup] = {
    "summary unknown model": flags("summary", "alexnet_9000"),
    "summary input too small": flags("summary", "alexnet", "--input-size", "3x40x40"),
    "summary input size garbage": flags("summary", "alexnet", "--input-size", "big"),
    "summary zero channels": flags("summary", "alexnet_small", "--input-size", "0x28x28"),
    "summary zero classes": flags("summary", "alexnet_small", "--num-classes", "0"),
    "eval missing checkpoint": flags("eval", "/nonexistent/last.pt"),
    "eval zero-byte checkpoint": lambda tmp: ["eval", str(_write(tmp / "z.pt", b""))],
    "eval random bytes": lambda tmp: ["eval", str(_write(tmp / "r.pt", bytes(range(256)) * 40))],
    "eval a plain tensor file": lambda tmp: ["eval", str(_torch_file(tmp / "t.pt"))],
    "predict missing checkpoint": flags("predict", "/nonexistent/best.pt", "x.png"),
    "predict top 0": flags("predict", "/nonexistent/best.pt", "x.png", "--top", "0"),
    "export unknown format": flags("export", "x.pt", "--format", "pickle", "-o", "x"),
    "no command": flags(),
    "unknown command": flags("fly"),
}  # fmt: skip


def _write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def _torch_file(path: Path) -> Path:
    torch.save(torch.zeros(3), path)
    return path


@pytest.mark.parametrize("case", list(OTHER_COMMANDS))
def test_other_commands_refuse_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    assert_one_line_error(*run_cli(OTHER_COMMANDS[case](tmp_path), capsys)[::2])


# ------------------------------------------------------------------------------------------ the models


def test_models_refuse_bad_inputs_through_the_python_api() -> None:
    net = models.create("alexnet_small", num_classes=10, in_channels=1)
    with pytest.raises(CnnlabError, match=r"expects input \[N, 1, H, W\], got \[2, 3, 28, 28\]"):
        net(torch.zeros(2, 3, 28, 28))
    with pytest.raises(CnnlabError, match=r"expects input"):
        net(torch.zeros(28, 28))
    big = models.create("alexnet", num_classes=10)
    with pytest.raises(CnnlabError, match=r"too small for alexnet.*at layer \w+.*at least \d+x\d+"):
        big(torch.zeros(1, 3, 40, 40))
    for bad in (
        lambda: models.create("alexnet_9000"),
        lambda: models.create("alexnet_small", num_classes=0),
        lambda: models.create("alexnet_small", in_channels=-1),
        lambda: models.create("alexnet_small", dropout=1.0),
        lambda: models.create("alexnet_small", activation="swish"),
        lambda: models.create("alexnet_small", wings=2),
    ):
        with pytest.raises(CnnlabError) as err:
            bad()
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "YCbCr", "LAB", "I;16", "I", "F"]
)
def test_odd_image_modes_decode_to_the_channels_asked(tmp_path: Path, mode: str) -> None:
    """Unusual but valid images are not errors: every Pillow mode becomes 8-bit RGB or grey."""
    arr = (np.arange(48, dtype=np.int64).reshape(6, 8) * 5).astype(np.uint8)
    if mode == "I;16":  # 16-bit grey, scaled back to 8 bits by 1/257
        im = Image.fromarray(arr.astype(np.uint16) * 257)
    else:
        im = Image.fromarray(arr, "L").convert(mode)
    path = tmp_path / ("x.png" if mode in ("1", "L", "LA", "P", "RGBA", "I;16") else "x.tiff")
    im.save(path)
    assert Image.open(path).mode == mode
    for channels in (1, 3):
        x = read_image(path, channels)
        assert x.dtype == torch.uint8 and tuple(x.shape) == (channels, 6, 8)
    if mode in ("L", "LA", "P", "I;16", "F"):  # grey values survive exactly (32-bit "I" counts as 16-bit)
        assert torch.equal(read_image(path, 1)[0], torch.from_numpy(arr))


# ----------------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_end_to_end_exit_code_and_stderr(tmp_path: Path) -> None:
    """The same refusals from a real `python -m cnnlab` process: exit code 2, one stderr line."""
    folder = write_idx_set(tmp_path / "mnist")
    (folder / IMAGES).write_bytes((folder / IMAGES).read_bytes()[:100])
    cases = [
        ["train", *TINY_BASE, "--epochs", "-1"],
        ["train", *TINY_BASE, "--dataset", "mnist", "--data-dir", str(folder)],
        ["train", *TINY_BASE, "--resume"],
    ]
    for argv in cases:
        out = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "cnnlab", *argv, "--out", str(out)],
            env=subprocess_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert_one_line_error(proc.returncode, proc.stderr)
        assert_no_run_left(out)
