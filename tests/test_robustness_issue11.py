"""Issue 11, outside the training core: nothing a user owns is lost, and no command ends in a traceback.

Each case here failed before its fix: `export` overwriting files (its own checkpoint included), a flipped
bit in a checkpoint loading silently, NaN weights and tampered options reaching the model, absurd sizes
reaching torch's allocator, negative counts, output paths below a file or on a full disk, symlink loops in
image folders, CIFAR and IDX bombs, torch's warning before our one line, and `eval` lacking the data flags
its own error message recommends.
"""

from __future__ import annotations

import copy
import errno
import gzip
import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _reliability import assert_one_line_error, no_hang, run_cli, tiny_argv, write_idx_set
from conftest import needs_dot
from PIL import Image

from cnnlab import checkpoint, data, limits, models, outfiles
from cnnlab.cli import main
from cnnlab.data import cifar
from cnnlab.data.idx import read_idx
from cnnlab.errors import CnnlabError

FORMATS = ("onnx", "torchscript", "safetensors")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained checkpoint at 28x28 (the small net's native size: every exporter handles it)."""
    root = tmp_path_factory.mktemp("issue11")
    assert main(tiny_argv(root / "run", 1, "--input-size", "28")) == 0
    return root / "run" / "checkpoints" / "last.pt"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    Image.new("L", (28, 28), 90).save(tmp_path / "x.png")
    return tmp_path / "x.png"


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, _, err = run_cli(argv, capsys)
    return assert_one_line_error(code, err)


# ------------------------------------------------------------------------------------------------ export


def test_export_refuses_an_existing_output_unless_forced(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "notes.safetensors"
    target.write_text("the user's own file")
    line = one_line(["export", str(ckpt), "--format", "safetensors", "-o", str(target)], capsys)
    assert "already exists" in line and "--force" in line
    assert target.read_text() == "the user's own file"
    code, _, err = run_cli(
        ["export", str(ckpt), "--format", "safetensors", "-o", str(target), "--force"], capsys
    )
    assert code == 0, err
    assert target.read_bytes()[:8] != b"the user"  # replaced by the export
    assert listing(tmp_path) == ["notes.safetensors"]


def test_export_never_overwrites_its_own_checkpoint(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = tmp_path / "own.pt"
    own.write_bytes(ckpt.read_bytes())
    before = own.read_bytes()
    (tmp_path / "link.pt").symlink_to(own)
    (tmp_path / "sub").mkdir()
    spellings = [str(own), str(tmp_path / "sub" / ".." / "own.pt"), str(tmp_path / "link.pt")]
    for out in spellings:
        for force in ([], ["--force"]):
            line = one_line(["export", str(own), "--format", "torchscript", "-o", out, *force], capsys)
            assert "is the checkpoint being exported" in line
    assert own.read_bytes() == before
    checkpoint.load(own)


def test_export_to_an_empty_path_is_one_line(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "-o is empty" in one_line(["export", str(ckpt), "--format", "onnx", "-o", ""], capsys)


def _eacces(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    if "w" in mode or "x" in mode:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    return open(path, mode, *args, **kwargs)


def _dev_full(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    if "x" in mode:  # the atomic writer's new temporary file
        return open("/dev/full", "wb")
    return open(path, mode, *args, **kwargs)


# How a write can fail: each sets up tmp_path and returns the output path the command is given.
WRITE_FAILURES: dict[str, Callable[[Path, pytest.MonkeyPatch, str], Path]] = {
    "parent is a file": lambda tmp, mp, name: (tmp / "a-file").write_text("x") and tmp / "a-file" / name,  # type: ignore[func-returns-value]
    "read-only folder": lambda tmp, mp, name: (
        mp.setattr(outfiles, "open", _eacces, raising=False) or tmp / name
    ),
    "full disk": lambda tmp, mp, name: mp.setattr(outfiles, "open", _dev_full, raising=False) or tmp / name,
}


def _fail_write(failure: str, tmp: Path, mp: pytest.MonkeyPatch, name: str) -> Path:
    if failure == "full disk" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    return WRITE_FAILURES[failure](tmp, mp, name)


@pytest.mark.parametrize("failure", list(WRITE_FAILURES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_write_failures_are_one_line_and_leave_nothing(
    ckpt: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    failure: str,
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = _fail_write(failure, out_dir, monkeypatch, "model" + SUFFIX[fmt])
    before = listing(out_dir)
    one_line(["export", str(ckpt), "--format", fmt, "-o", str(out)], capsys)
    assert listing(out_dir) == before  # no output, no temporary file


# --------------------------------------------------------------------------------------- integrity digest


def _data_records(path: Path) -> list[tuple[str, int, int]]:
    """(name, offset of its first byte in the file, size) of each tensor record in a torch zip."""
    found = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            if "/data/" not in info.filename or info.file_size == 0:
                continue
            f.seek(info.header_offset)
            header = f.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            found.append((info.filename, info.header_offset + 30 + name_len + extra_len, info.file_size))
    return found


def _flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x10
    path.write_bytes(bytes(blob))


def test_a_flipped_bit_in_any_tensor_is_refused(
    ckpt: Path, tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _data_records(ckpt)
    assert len(records) > 10  # weights, optimiser state, statistics
    for _, start, size in records:
        bad = tmp_path / "bad.pt"
        bad.write_bytes(ckpt.read_bytes())
        _flip(bad, start + size // 2)
        with pytest.raises(
            CnnlabError, match=r"is corrupt: its content \(weights or metadata\) does not match"
        ):
            checkpoint.load(bad)
    line = one_line(["predict", str(bad), str(image)], capsys)
    assert "is corrupt" in line


def test_checkpoints_without_the_whole_digest_are_refused(ckpt: Path, tmp_path: Path) -> None:
    """No released cnnlab wrote checkpoints without it: a missing digest (a flipped bit in the word
    `integrity` reads as one) or the tensor-only digest of development versions is refused."""
    old = torch.load(ckpt, weights_only=True)
    assert old["integrity"]["algorithm"] == "sha256-canonical-1"
    del old["integrity"]
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(CnnlabError, match="has no integrity digest"):
        checkpoint.load(tmp_path / "old.pt")
    old["integrity"] = {"algorithm": "sha256", "tensors": 3, "digest": "0" * 64}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(CnnlabError, match="was checked with 'sha256'"):
        checkpoint.load(tmp_path / "old.pt")


# ---------------------------------------------------------------------- NaN weights, broken statistics


def _tampered(ckpt: Path, tmp: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of `ckpt` changed by `change`, written by cnnlab (so its digest is valid)."""
    c = copy.deepcopy(dict(checkpoint.load(ckpt)))
    change(c)
    checkpoint.save(c, tmp / "t.pt")
    return tmp / "t.pt"


def _first_weight(c: dict[str, Any], value: float) -> None:
    name = next(k for k, v in c["model"].items() if v.is_floating_point())
    c["model"][name] = c["model"][name].clone()
    c["model"][name].view(-1)[0] = value


def _stats(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: c.update(data_stats=dict(c["data_stats"], **{key: value}))


NUMERIC_TAMPER: dict[str, Callable[[dict[str, Any]], None]] = {
    "a NaN weight": lambda c: _first_weight(c, float("nan")),
    "an infinite weight": lambda c: _first_weight(c, float("inf")),
    "NaN mean": _stats("mean", [float("nan")]),
    "infinite mean": _stats("mean", [float("inf")]),
    "NaN std": _stats("std", [float("nan")]),
    "negative std": _stats("std", [-0.3]),
    "NaN mean image": lambda c: c.update(
        data_stats=dict(c["data_stats"], mean_image=torch.full_like(c["data_stats"]["mean_image"], torch.nan))
    ),
}


@pytest.mark.parametrize("change", list(NUMERIC_TAMPER))
def test_non_finite_weights_or_statistics_are_refused_everywhere(
    ckpt: Path, tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    bad = _tampered(ckpt, tmp_path, NUMERIC_TAMPER[change])
    for argv in (
        ["predict", str(bad), str(image)],
        ["eval", str(bad), "--out", str(tmp_path / "ev")],
        ["export", str(bad), "--format", "safetensors", "-o", str(tmp_path / "m.safetensors")],
    ):
        line = one_line(argv, capsys)
        assert "NaN" in line or "negative" in line, line
    assert listing(tmp_path) == ["t.pt", "x.png"]


# ------------------------------------------------------------------------------- tampered model options


def _augment(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: c.update(augment=dict(c["augment"], **{key: value}))


def _option(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda c: c.update(model_options=dict(c["model_options"], **{key: value}))


OPTION_TAMPER: dict[str, Callable[[dict[str, Any]], None]] = {
    "num_classes among the options": _option("num_classes", 3),
    "in_channels among the options": _option("in_channels", 3),
    "width inf": _option("width", float("inf")),
    "width nan as text": _option("width", "nan"),
    "width 1e9": _option("width", 1e9),
    "width 1e5": _option("width", 1e5),
    "input size a float": _augment("input_size", 28.5),
    "input size huge": _augment("input_size", 10**7),
    "resize a float": _augment("resize", 256.0),
    "pad a float": _augment("pad", 0.5),
}


@pytest.mark.parametrize("change", list(OPTION_TAMPER))
def test_tampered_model_options_are_refused_before_allocating(
    ckpt: Path, tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    bad = _tampered(ckpt, tmp_path, OPTION_TAMPER[change])
    with no_hang(60):
        for argv in (
            ["predict", str(bad), str(image)],
            ["eval", str(bad), "--out", str(tmp_path / "ev")],
            ["export", str(bad), "--format", "torchscript", "-o", str(tmp_path / "m.pt")],
            ["filters", str(bad), "-o", str(tmp_path / "f.png")],
        ):
            one_line(argv, capsys)
    assert listing(tmp_path) == ["t.pt", "x.png"]


def test_create_refuses_clashing_and_absurd_switches_through_the_python_api() -> None:
    for bad in (
        lambda: models.create_from("alexnet_small", 10, 1, {"num_classes": 3}),
        lambda: models.create("alexnet_small", width=float("inf")),
        lambda: models.create("alexnet_small", width=1e5),  # 4e15 parameters: refused on its estimate
        lambda: models.create("alexnet_small", width=1e9),  # beyond what torch can even describe
        lambda: models.create("vgg11", num_classes=10**9),
        lambda: models.create("alexnet_small", in_channels=2**40),
    ):
        with no_hang(30), pytest.raises(CnnlabError) as err:
            bad()
        assert "\n" not in str(err.value)
    assert models.create_from("alexnet_small", 10, 1, {"width": "0.5"}) is not None


def test_check_fits_refuses_what_the_memory_cannot_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)
    limits.check_fits(999, "a thing", "ask for less")
    with pytest.raises(CnnlabError, match=r"a thing needs about 1.95 KiB of memory but only 1000 bytes"):
        limits.check_fits(2000, "a thing", "ask for less")
    monkeypatch.undo()
    assert limits.available_memory() > 0


# ------------------------------------------------------------------------------------ sizes and counts


TRAIN = ["train", "--model", "alexnet_small", "--dataset", "digits", "--recipe", "fast", "--out", "run",
         "--progress", "none"]  # fmt: skip
CLI_REFUSALS: dict[str, list[str]] = {
    "compare batch 1e9": ["compare", "alexnet_small", "--batch-size", "1000000000", "--device", "cpu"],
    "compare batch beyond a count": ["compare", "alexnet_small", "--batch-size", "1e9", "--no-timing"],
    "compare huge input": ["compare", "alexnet_small", "--input-size", "3x100000x100000", "--device", "cpu"],
    "compare zero steps": ["compare", "alexnet_small", "--steps", "0"],
    "compare negative warmup": ["compare", "alexnet_small", "--warmup", "-1"],
    "compare zero classes": ["compare", "alexnet_small", "--num-classes", "0", "--no-timing"],
    "compare unknown device": ["compare", "alexnet_small", "--device", "tpu"],
    "summary negative batch": ["summary", "alexnet_small", "--batch-size", "-1"],
    "summary overflowing input": [
        "summary", "alexnet_small", "--input-size", "3x1000000x1000000", "--batch-size", "1000000000",
    ],
    "models zero classes": ["models", "--num-classes", "0"],
    "diagram negative depth": ["diagram", "alexnet_small", "--depth", "-1", "-o", "d.svg"],
    "diagram huge input": ["diagram", "alexnet_small", "--input-size", "3x100000x100000", "-o", "d.svg"],
    "diagram zero classes": ["diagram", "alexnet_small", "--num-classes", "0", "-o", "d.svg"],
    "filters negative cols": ["filters", "alexnet_small", "--init", "--cols", "-3", "-o", "f.png"],
    "filters zero cols": ["filters", "alexnet_small", "--init", "--cols", "0", "-o", "f.png"],
    "filters zero channels": ["filters", "alexnet_small", "--init", "--in-channels", "0", "-o", "f.png"],
    "filters seed beyond 64 bits": [
        "filters", "alexnet_small", "--init", "--seed", str(2**70), "-o", "f.png",
    ],
    "filters not a png": ["filters", "alexnet_small", "--init", "-o", "f.jpg"],
    "data negative show-skipped": ["data", "--dataset", "digits", "--show-skipped", "-1"],
    "predict negative top": ["predict", "x.pt", "x.png", "--top", "-1"],
    "reproduce zero seeds": ["reproduce", "lrn", "--budget", "tiny", "--seeds", "0"],
    "train huge input size": [*TRAIN, "--input-size", "300000"],
    "train huge resize": [*TRAIN, "--resize", "300000"],
    "train huge pad": [*TRAIN, "--pad", "1000000000"],
    "train huge batch": [*TRAIN, "--batch-size", "1000000000"],
    "train model-opt num_classes": [*TRAIN, "--model-opt", "num_classes=3"],
    "train model-opt in_channels": [*TRAIN, "--model-opt", "in_channels=3"],
    "train model-opt infinite width": [*TRAIN, "--model-opt", "width=inf"],
    "train model-opt huge width": [*TRAIN, "--model-opt", "width=1e9"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLI_REFUSALS))
def test_impossible_sizes_and_counts_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with no_hang(60):
        one_line(CLI_REFUSALS[case], capsys)
    assert listing(tmp_path) == []


NEIGHBORS = ["neighbors", "CKPT", "-o", "n.png", "--dataset", "digits"]
CKPT_REFUSALS: dict[str, list[str]] = {
    "eval limit -5": ["eval", "CKPT", "--limit", "-5", "--out", "ev"],
    "eval limit 0": ["eval", "CKPT", "--limit", "0", "--out", "ev"],
    "eval batch 0": ["eval", "CKPT", "--batch-size", "0", "--out", "ev"],
    "eval empty out": ["eval", "CKPT", "--out", ""],
    "compare empty out": ["compare", "alexnet_small", "--no-timing", "--out", ""],
    "neighbors zero queries": [*NEIGHBORS, "--queries", "0"],
    "neighbors zero k": [*NEIGHBORS, "--k", "0"],
    "neighbors negative bank": [*NEIGHBORS, "--bank-size", "-1"],
    "neighbors zero batch": [*NEIGHBORS, "--batch-size", "0"],
    "neighbors k beyond the bank": [*NEIGHBORS, "--bank-size", "3", "--k", "5"],
    "neighbors seed below 64 bits": [*NEIGHBORS, "--seed", str(-(2**70))],
    "neighbors unknown device": [*NEIGHBORS, "--device", "tpu"],
    "export into a folder": ["export", "CKPT", "--format", "onnx", "-o", "."],
}  # fmt: skip


@pytest.mark.parametrize("case", list(CKPT_REFUSALS))
def test_negative_and_zero_counts_with_a_checkpoint_are_one_line(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [str(ckpt) if a == "CKPT" else a for a in CKPT_REFUSALS[case]]
    one_line(argv, capsys)
    assert listing(tmp_path) == []


def test_filters_with_more_columns_than_kernels_draws_them_in_one_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.png"
    code, _, err = run_cli(
        ["filters", "alexnet_small", "--init", "--cols", "1000000000", "-o", str(out)], capsys
    )
    assert code == 0, err
    assert Image.open(out).size[0] < 10_000


# --------------------------------------------------------------------------------- every command's output


def _writers(ckpt: Path, out: Path) -> dict[str, list[str]]:
    return {
        "diagram": [
            "diagram", "alexnet_small", "--input-size", "1x28x28", "--depth", "1", "-o", str(out / "d.svg"),
        ],
        "filters": ["filters", str(ckpt), "-o", str(out / "f.png")],
        "neighbors": [
            "neighbors", str(ckpt), "-o", str(out / "n.png"), "--dataset", "digits", "--queries", "2",
            "--k", "2", "--bank-size", "50", "--device", "cpu",
        ],
        "compare": ["compare", "alexnet_small", "--no-timing", "--out", str(out / "cmp")],
        "eval": ["eval", str(ckpt), "--limit", "20", "--device", "cpu", "--out", str(out / "ev")],
    }  # fmt: skip


@pytest.mark.parametrize("failure", list(WRITE_FAILURES))
@pytest.mark.parametrize(
    "command", [pytest.param("diagram", marks=needs_dot), "filters", "neighbors", "compare", "eval"]
)
def test_every_writing_command_fails_in_one_line_and_leaves_nothing(
    ckpt: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    failure: str,
) -> None:
    base = tmp_path / "out"
    base.mkdir()
    where = _fail_write(failure, base, monkeypatch, "sub")
    before = listing(base)
    line = one_line(_writers(ckpt, where)[command], capsys)
    assert str(where) in line or str(where.parent) in line, line
    after = [p for p in listing(base) if p not in before]
    # Nothing but (at most) the folder the command creates for its files: no file, no temporary file.
    assert all((base / p).is_dir() for p in after), after


# --------------------------------------------------------------------------------------- image folders


def _image_folder(root: Path) -> Path:
    for split in ("train", "val"):
        for k, name in enumerate(("ant", "bee")):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (10, 10), (90 * k, 30 * i, 0)).save(root / split / name / f"{i}.png")
    return root


LINKS: dict[str, Callable[[Path], None]] = {
    "a link to . in a class folder": lambda r: (r / "train" / "ant" / "loop").symlink_to("."),
    "a link to the split": lambda r: (r / "train" / "ant" / "up").symlink_to(r / "train"),
    "a link to the root": lambda r: (r / "train" / "bee" / "root").symlink_to(r),
    "a link to /": lambda r: (r / "train" / "bee" / "slash").symlink_to("/"),
    "a link to another class": lambda r: (r / "train" / "ant" / "bees").symlink_to(r / "train" / "bee"),
    "a link to a file of the class": lambda r: (r / "train" / "ant" / "3.png").symlink_to(
        r / "train" / "ant" / "0.png"
    ),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_image_folders_never_follow_links_back_into_the_tree(tmp_path: Path, case: str) -> None:
    root = _image_folder(tmp_path / "images")
    LINKS[case](root)
    with no_hang(30):
        ds = data.load(f"folder:{root}", "train")
    assert len(ds) == 6  # each real file once
    assert sorted(ds.labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_links_to_images_and_folders_elsewhere_are_followed(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    elsewhere = tmp_path / "more"
    elsewhere.mkdir()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(elsewhere / "a.png")
    Image.new("RGB", (10, 10), (3, 2, 1)).save(elsewhere / "b.png")
    (root / "train" / "ant" / "more").symlink_to(elsewhere)
    (root / "train" / "bee" / "b.png").symlink_to(elsewhere / "b.png")  # already under ant/more: once
    (elsewhere / "loop").symlink_to(elsewhere)  # a loop outside the tree, too
    with no_hang(30):
        ds = data.load(f"folder:{root}", "train")
    assert len(ds) == 8


# -------------------------------------------------------------------------------------- CIFAR and IDX


def _cifar_folder(tmp: Path, labels: Any, images: int = 4) -> Path:
    folder = tmp / cifar.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    flat = rng.integers(0, 256, (images, 3072), dtype=np.uint8)
    blob = pickle.dumps({b"data": flat, b"labels": labels}, protocol=2)
    for name in (*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES):
        (folder / name).write_bytes(blob)
    return folder


def _shared_nest(depth: int) -> list[Any]:
    x: list[Any] = [1]
    for _ in range(depth):
        x = [x, x]  # a few bytes per level in the pickle (memoised), 2^depth labels when expanded
    return x


CIFAR_LABELS: dict[str, Any] = {
    "float labels": [0.0, 1.5, 2.0, 3.0],
    "whole floats": [0.0, 1.0, 2.0, 3.0],
    "a float array": np.array([0.0, 1.0, 2.0, 3.0]),
    "a 2-D array": np.zeros((4, 1), dtype=np.int64),
    "nested shared lists": _shared_nest(40),
    "four shared nests": [_shared_nest(30)] * 4,
    "booleans": [True, False, True, False],
    "a string": "0123",
}


@pytest.mark.parametrize("case", list(CIFAR_LABELS))
def test_cifar_labels_must_be_a_flat_list_of_whole_numbers(tmp_path: Path, case: str) -> None:
    folder = _cifar_folder(tmp_path, CIFAR_LABELS[case])
    with no_hang(20), pytest.raises(CnnlabError, match=r"labels") as err:
        cifar.load_cifar10(folder, "train")
    assert "\n" not in str(err.value)


def test_an_idx_gzip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    n = 20_000
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 32, 32) + bytes(n * 32 * 32)  # 20 MB of zeros
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw, 9))
    assert path.stat().st_size * 500 < len(raw)  # deflate packs zeros ~1000:1
    with pytest.raises(CnnlabError, match=r"times its size.*decompression bomb"):
        read_idx(path)


def test_an_idx_file_larger_than_memory_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_idx_set(tmp_path / "mnist")
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)
    with pytest.raises(CnnlabError, match=r"needs about .* of memory but only 1000 bytes"):
        read_idx(folder / "train-images-idx3-ubyte")


# ---------------------------------------------------------------------------------------- legacy pickles


def test_a_legacy_pickle_checkpoint_gives_one_line_and_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"format": "x", "w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"format": "x"}))
    for p in (path, raw):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with pytest.raises(CnnlabError):
                checkpoint.load(p)
        assert [str(w.message) for w in seen] == []


# ------------------------------------------------------------------------------------------ data flags


def test_every_command_reading_a_data_set_takes_the_same_data_flags(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cnnlab.cli import build_parser

    parser = build_parser()
    flags = ["--dataset", "digits", "--data-dir", "/x", "--download", "--skip-bad-images"]
    for argv in (
        ["eval", "c.pt"],
        ["data"],
        ["neighbors", "c.pt", "-o", "n.png"],
        ["reproduce", "lrn"],
        ["train", "--model", "alexnet_small"],
    ):
        ns = parser.parse_args([*argv, *flags])
        assert (ns.dataset, ns.data_dir, ns.download, ns.skip_bad_images) == ("digits", "/x", True, True)
    # The flag the bad-image error recommends works where the error comes from: eval on a folder.
    root = _image_folder(tmp_path / "images")
    (root / "val" / "bee" / "1.png").write_bytes(b"not a png")
    ds_flag = [
        "--dataset",
        f"folder:{root}",
        "--split",
        "val",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "ev"),
    ]
    line = one_line(["eval", str(ckpt), *ds_flag], capsys)
    assert "--skip-bad-images" in line
    _, _, err = run_cli(["eval", str(ckpt), *ds_flag, "--skip-bad-images"], capsys)
    # The digits checkpoint has other classes than the folder: refused, but past the bad image.
    assert "other classes" in err or "classes" in err, err
    assert "unreadable image" not in err


@needs_dot
@pytest.mark.parametrize("name", ["alexnet_small", "vgg11"])
def test_a_diagram_at_any_depth_is_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """--depth 1 met a container the forward builds on the fly (not a submodule): a KeyError before."""
    for depth in ("0", "1", "2"):
        out = tmp_path / f"d{depth}.svg"
        code, _, err = run_cli(["diagram", name, "--depth", depth, "-o", str(out)], capsys)
        assert code == 0, err
        assert out.read_text().startswith("<?xml")
