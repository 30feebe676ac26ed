"""Property-based fuzzing of everything that reads a file a stranger may have written.

Random bytes and mutated valid files go into the IDX reader, the CIFAR unpickler, the image decoder and
the checkpoint reader: each must return a result or raise CnnlabError, never another exception, a hang
or a crash. Example counts are bounded and the runs derandomized, so the suite takes seconds and fails
the same way every time it fails.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from _formats import write_idx
from _reliability import no_hang
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab import checkpoint, integrity
from cnnlab.data import cifar, read_image
from cnnlab.data.folder import verify_image
from cnnlab.data.idx import load_idx_pair, read_idx
from cnnlab.errors import CnnlabError
from cnnlab.settings import check

# CNNLAB_FUZZ_SCALE=50 runs fifty times the examples with fresh random draws (a deeper campaign by hand).
SCALE = float(os.environ.get("CNNLAB_FUZZ_SCALE", "1"))
FUZZ = settings(
    max_examples=150,
    deadline=None,  # the machine is shared: time per example is no property of the code
    derandomize=SCALE == 1,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# An edit: (position as a fraction of the length, kind, byte value).
EDITS = st.lists(
    st.tuples(
        st.floats(0, 1, exclude_max=True),
        st.sampled_from(["set", "insert", "delete", "cut"]),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=6,
)


def mutate(blob: bytes, edits: list[tuple[float, str, int]]) -> bytes:
    out = bytearray(blob)
    for where, kind, value in edits:
        if not out:
            break
        i = int(where * len(out))
        if kind == "set":
            out[i] = value
        elif kind == "insert":
            out[i:i] = bytes([value]) * (1 + value % 7)
        elif kind == "delete":
            del out[i : i + 1 + value % 31]
        else:
            del out[i:]
    return bytes(out)


def only_cnnlab_errors(read: object, *args: object) -> object:
    """Call `read(*args)`: a result or a CnnlabError; any other exception fails the property."""
    with no_hang(20):
        try:
            return read(*args)  # type: ignore[operator]
        except CnnlabError as exc:
            assert "\n" not in str(exc)
            return None


# ------------------------------------------------------------------------------------------------ IDX


def _raw_idx(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 8, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}[array.dtype]
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


IDX_SEEDS = [
    _raw_idx(np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4)),
    _raw_idx(np.arange(6, dtype=np.uint8)),
    _raw_idx(np.arange(6, dtype=">i4").reshape(2, 3)),
    _raw_idx(np.linspace(0, 1, 8, dtype=">f4").reshape(2, 2, 2)),
]


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(blob=st.binary(max_size=200), gz=st.booleans())
def test_idx_random_bytes(tmp_path: Path, blob: bytes, gz: bool) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(gzip.compress(blob) if gz else blob)
    only_cnnlab_errors(read_idx, path)


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(seed=st.sampled_from(range(len(IDX_SEEDS))), edits=EDITS, gz=st.booleans())
def test_idx_mutated_files(tmp_path: Path, seed: int, edits: list[tuple[float, str, int]], gz: bool) -> None:
    blob = mutate(IDX_SEEDS[seed], edits)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(mutate(gzip.compress(IDX_SEEDS[seed]), edits) if gz else blob)
    array = only_cnnlab_errors(read_idx, path)
    if isinstance(array, np.ndarray):  # what the reader accepts is exactly what the header says
        assert array.size * array.itemsize <= max(path.stat().st_size * 1100, 1 << 20)


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(edits_images=EDITS, edits_labels=EDITS)
def test_idx_pairs_of_mutated_files(tmp_path: Path, edits_images: list, edits_labels: list) -> None:
    images = np.arange(4 * 6 * 6, dtype=np.uint8).reshape(4, 6, 6)
    write_idx(tmp_path / "i", images)
    write_idx(tmp_path / "l", np.array([0, 1, 2, 3], np.uint8))
    for name, edits in (("i", edits_images), ("l", edits_labels)):
        (tmp_path / name).write_bytes(mutate((tmp_path / name).read_bytes(), edits))
    ds = only_cnnlab_errors(
        load_idx_pair, "mnist", "train", tmp_path / "i", tmp_path / "l", list("0123456789")
    )
    if ds is not None:
        assert int(ds.labels.max()) < 10 and ds.images.dtype == torch.uint8 and ds.images.dim() == 4


# ---------------------------------------------------------------------------------------------- CIFAR


def _cifar_blob(protocol: int) -> bytes:
    rng = np.random.default_rng(protocol)
    obj = {
        b"batch_label": b"fuzz",
        b"labels": [0, 3, 9],
        b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
        b"filenames": [b"a.png", b"b.png", b"c.png"],
    }
    return pickle.dumps(obj, protocol=protocol)


CIFAR_SEEDS = [_cifar_blob(p) for p in (2, 4, 5)]


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(blob=st.binary(max_size=300))
def test_cifar_random_bytes(tmp_path: Path, blob: bytes) -> None:
    (tmp_path / "data_batch_1").write_bytes(blob)
    only_cnnlab_errors(cifar.read_batch, tmp_path / "data_batch_1")


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(seed=st.sampled_from(range(len(CIFAR_SEEDS))), edits=EDITS)
def test_cifar_mutated_batches(tmp_path: Path, seed: int, edits: list[tuple[float, str, int]]) -> None:
    (tmp_path / "data_batch_1").write_bytes(mutate(CIFAR_SEEDS[seed], edits))
    result = only_cnnlab_errors(cifar.read_batch, tmp_path / "data_batch_1")
    if result is not None:
        images, labels = result  # type: ignore[misc]
        assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32) and len(labels) == len(images)
    (tmp_path / "batches.meta").write_bytes(mutate(pickle.dumps({b"label_names": [b"cat", b"dog"]}), edits))
    only_cnnlab_errors(cifar.read_classes, tmp_path)


# --------------------------------------------------------------------------------------------- images


def _image_blob(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    if fmt == "GIF":
        im = im.convert("P")
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


IMAGE_SEEDS = {fmt: _image_blob(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


def _decode(path: Path, channels: int) -> None:
    reason = verify_image(str(path))  # the load-time check never raises: it reports
    assert reason is None or isinstance(reason, str)
    x = only_cnnlab_errors(read_image, path, channels, 8)
    if x is not None:
        assert isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and tuple(x.shape) == (channels, 8, 8)


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(fmt=st.sampled_from(sorted(IMAGE_SEEDS)), edits=EDITS, channels=st.sampled_from([1, 3]))
def test_image_decoder_on_mutated_files(
    tmp_path: Path, fmt: str, edits: list[tuple[float, str, int]], channels: int
) -> None:
    path = tmp_path / ("x" + SUFFIX[fmt])
    path.write_bytes(mutate(IMAGE_SEEDS[fmt], edits))
    _decode(path, channels)


@settings(FUZZ, max_examples=int(150 * SCALE))
@given(blob=st.binary(max_size=300), suffix=st.sampled_from(sorted(set(SUFFIX.values()))))
def test_image_decoder_on_random_bytes(tmp_path: Path, blob: bytes, suffix: str) -> None:
    path = tmp_path / ("x" + suffix)
    path.write_bytes(blob)
    _decode(path, 3)


def test_an_image_announcing_billions_of_pixels_is_refused_before_allocation(tmp_path: Path) -> None:
    """A decompression bomb (a tiny file claiming 100000 x 100000 pixels) is an error, not 30 GB of RAM."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    with no_hang(20), pytest.raises(CnnlabError, match=r"bomb|exceeds limit"):
        read_image(tmp_path / "bomb.png")
    assert verify_image(str(tmp_path / "bomb.png")) is not None


# ----------------------------------------------------------------------------------------- checkpoints


def _checkpoint_blob() -> bytes:
    ckpt = {
        "format": checkpoint.FORMAT, "format_version": 1, "model_name": "alexnet_small", "model_options": {},
        "num_classes": 2, "in_channels": 1, "classes": ["a", "b"],
        "model": {"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(3, dtype=torch.int64)},
        "metrics": [{"epoch": 1, "lr": 0.01}], "config": {"dataset": "digits"},
    }  # fmt: skip
    ckpt["integrity"] = integrity.digest(ckpt)  # a valid checkpoint: mutations then meet every check
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


CHECKPOINT_SEED = _checkpoint_blob()


@settings(FUZZ, max_examples=int(100 * SCALE))
@given(edits=EDITS)
def test_checkpoint_reader_on_mutated_files(tmp_path: Path, edits: list[tuple[float, str, int]]) -> None:
    (tmp_path / "last.pt").write_bytes(mutate(CHECKPOINT_SEED, edits))
    ckpt = only_cnnlab_errors(checkpoint.load, tmp_path / "last.pt")
    if ckpt is not None:  # accepted: then it has the promised shape
        assert isinstance(ckpt, dict) and isinstance(ckpt["model"], dict)


@settings(FUZZ, max_examples=int(60 * SCALE))
@given(blob=st.binary(max_size=400))
def test_checkpoint_reader_on_random_bytes(tmp_path: Path, blob: bytes) -> None:
    (tmp_path / "last.pt").write_bytes(blob)
    only_cnnlab_errors(checkpoint.load, tmp_path / "last.pt")


# A tampered checkpoint with a matching digest (a forgery): any entry replaced by any plain value, or a
# model name naming code. Loading and rebuilding must end in a result or one CnnlabError, and no spec a
# checkpoint names is ever imported.
PLAIN = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20),
        st.sampled_from(["subprocess:run", "os:system", "builtins:exec", "x.py:Net", "alexnet_small"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)  # fmt: skip
SCHEMA_KEYS = ["format_version", "model_name", "model_options", "num_classes", "in_channels", "classes",
               "model", "metrics", "config", "data_stats", "augment"]  # fmt: skip


@settings(FUZZ, max_examples=int(100 * SCALE))
@given(key=st.sampled_from(SCHEMA_KEYS), value=PLAIN)
def test_tampered_checkpoint_schemas_are_refused_in_one_line(tmp_path: Path, key: str, value: object) -> None:
    ckpt = torch.load(io.BytesIO(CHECKPOINT_SEED), weights_only=True)
    ckpt[key] = value
    ckpt["integrity"] = integrity.digest(ckpt)
    torch.save(ckpt, tmp_path / "t.pt")
    loaded = only_cnnlab_errors(checkpoint.load, tmp_path / "t.pt")
    if loaded is not None:
        assert isinstance(loaded, dict)
        only_cnnlab_errors(checkpoint.build_model, loaded)  # never imports a named spec (no --model)


# ------------------------------------------------------------------------------------ training settings

NUMBERS = st.one_of(st.none(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True))


@settings(FUZZ, max_examples=int(300 * SCALE))
@given(
    values=st.fixed_dictionaries(
        {name: NUMBERS for name in ("lr", "momentum", "weight_decay", "label_smoothing", "warmup", "pca_std")}
    ),
    ints=st.fixed_dictionaries(
        {
            name: st.one_of(st.none(), st.integers(-(2**70), 2**70))
            for name in (
                "epochs",
                "batch_size",
                "input_size",
                "patience",
                "max_drops",
                "pad",
                "resize",
                "workers",
            )
        }
    ),
    seed=st.integers(-(2**70), 2**70),
)
def test_training_settings_are_checked_not_crashed_on(values: dict, ints: dict, seed: int) -> None:
    given = {k: v for k, v in {**values, **ints}.items() if v is not None}
    only_cnnlab_errors(check, {"model": "alexnet_small", "dataset": "digits", "seed": seed, **given})
