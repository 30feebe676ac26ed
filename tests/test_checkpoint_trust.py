"""A checkpoint can never steer cnnlab into running code, and nothing it holds can change silently: the
digest covers the whole checkpoint, and its structure is checked before any of it is used."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from _reliability import assert_one_line_error, run_cli, tiny_argv
from PIL import Image

from cnnlab import checkpoint
from cnnlab.cli import main
from cnnlab.errors import CnnlabError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    assert main(tiny_argv(root / "run", 1, "--input-size", "28")) == 0
    return root / "run" / "checkpoints" / "last.pt"


def _tampered(src: Path, dst: Path, change: Any) -> Path:
    """A copy of checkpoint `src` with `change(dict)` applied, saved with a valid digest (a forgery, not
    corruption: what a hostile file looks like)."""
    ckpt = dict(checkpoint.load(src))
    change(ckpt)
    checkpoint.save(ckpt, dst)
    return dst


# ------------------------------------------------------------------------------ checkpoints that name code

SPECS = {
    "a module function": ("subprocess:run", {"args": "touch {marker}", "shell": True}),
    "os.system": ("os:system", {"command": "touch {marker}"}),
    "a nested attribute": ("subprocess:Popen.__init__", {"args": "touch {marker}"}),
    "a file's import": ("{evil}:run", {"args": "touch {marker}", "shell": True}),
    "a file's function": ("{evil}:make", {"path": "{marker}"}),
}
EVIL = """
from subprocess import run
from pathlib import Path

def make(path):
    Path(path).write_text("ran")
"""


@pytest.mark.parametrize("case", sorted(SPECS))
def test_a_checkpoint_naming_code_never_runs_it(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    marker, evil = tmp_path / "ran.txt", tmp_path / "evil.py"
    evil.write_text(EVIL)
    spec, options = SPECS[case]
    spec = spec.format(evil=evil)
    opts = {k: v.format(marker=marker) if isinstance(v, str) else v for k, v in options.items()}
    bad = _tampered(trained, tmp_path / "bad.pt", lambda c: c.update(model_name=spec, model_options=opts))
    image = tmp_path / "x.png"
    Image.new("L", (28, 28), 9).save(image)
    commands = [
        ["predict", str(bad), str(image)],
        ["eval", str(bad), "--limit", "5", "--out", str(tmp_path / "ev")],
        ["export", str(bad), "--format", "safetensors", "-o", str(tmp_path / "m.st")],
    ]
    for argv in commands:
        line = assert_one_line_error(*run_cli(argv, capsys)[::2])
        assert f"--model {spec}" not in line, line  # never advice to run the checkpoint's own spec
        # Even when the user does pass that spec themselves, only a class defined in a file is built.
        line = assert_one_line_error(*run_cli([*argv, "--model", spec], capsys)[::2])
        assert not marker.exists(), (argv, line)


def test_a_resumed_run_never_builds_code_its_checkpoint_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran.txt"
    out = tmp_path / "run"
    assert main(tiny_argv(out, 1)) == 0
    last = out / "checkpoints" / "last.pt"
    opts = {"args": f"touch {marker}", "shell": True}

    def name_code(c: dict[str, Any]) -> None:
        c.update(model_name="subprocess:run", model_options=opts)
        c["config"] = {**c["config"], "model": "subprocess:run", "model_options": opts}

    _tampered(last, last, name_code)
    argv = ["train", "--out", str(out), "--resume", "--epochs", "2", "--progress", "none", "--no-report"]
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "never imports code" in line and "--model subprocess:run" not in line, line
    line = assert_one_line_error(*run_cli([*argv, "--model", "subprocess:run"], capsys)[::2])
    assert "only from a class in a Python file you name" in line, line
    assert not marker.exists()


def test_a_network_class_defined_in_the_named_file_is_rebuilt(tmp_path: Path) -> None:
    from cnnlab.models import user

    net = tmp_path / "net.py"
    net.write_text("from torch import nn\nclass Net(nn.Linear):\n    pass\nfrom torch.nn import Linear\n")
    assert isinstance(
        user.load_checkpoint_network(f"{net}:Net", in_features=2, out_features=3), torch.nn.Linear
    )
    with pytest.raises(CnnlabError, match=r"not a torch\.nn\.Module class defined in"):
        user.load_checkpoint_network(f"{net}:Linear", in_features=2, out_features=3)  # imported, not defined
    with pytest.raises(CnnlabError, match="only from a class in a Python file you name"):
        user.load_checkpoint_network("torch.nn:Linear", in_features=2, out_features=3)


# ------------------------------------------------------------------------ the digest covers everything


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
            and a.shape == b.shape and bool(torch.equal(a, b))
        )  # fmt: skip
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _pickle_span(path: Path) -> tuple[int, int]:
    """(offset of data.pkl's first byte in the torch zip, its size): the checkpoint's metadata."""
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
        assert info.compress_type == zipfile.ZIP_STORED
        f.seek(info.header_offset)
        name_len, extra_len = struct.unpack("<HH", f.read(30)[26:30])
        return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_every_bit_flip_in_the_metadata_is_refused(trained: Path, tmp_path: Path) -> None:
    """One flipped bit in each byte of the pickle (data.pkl: every entry but the tensors' bytes) of a small
    checkpoint with a real run's metadata: every flip that changes what loads is refused in one line."""
    meta = {k: v for k, v in checkpoint.load(trained).items() if k not in ("optimizer", "scheduler", "model")}
    small = tmp_path / "small.pt"
    checkpoint.save({**meta, "model": {"w": torch.arange(4.0)}}, small)
    original = dict(checkpoint.load(small))
    blob = small.read_bytes()
    start, size = _pickle_span(small)
    assert size > 1000  # the config, statistics, class names, options...
    bad = tmp_path / "bad.pt"
    changed = refused = 0
    for offset in range(start, start + size):
        flipped = bytearray(blob)
        flipped[offset] ^= 1 << (offset % 8)
        bad.write_bytes(bytes(flipped))
        try:
            loaded = checkpoint.load(bad)
        except CnnlabError as exc:
            refused += 1
            assert "\n" not in str(exc)
            continue
        changed += not _same(dict(loaded), original)
    assert changed == 0, f"{changed} of {size} flips loaded with changed content"
    assert refused > size // 2


def test_the_digest_is_over_storage_bytes_and_never_expands_a_view(tmp_path: Path) -> None:
    """A stride-0 view of 2^34 elements over a 4-byte storage (a 3 MB file asking for 64 GiB) is refused
    before anything touches its values."""
    from cnnlab import integrity

    ckpt = {"format": checkpoint.FORMAT, "big": torch.zeros(1).expand(2**17, 2**17)}
    with pytest.raises(integrity.Untrustworthy, match="stores only 1"):
        integrity.digest(ckpt)
    ckpt["integrity"] = {"algorithm": integrity.ALGORITHM, "digest": "0" * 64}
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(CnnlabError, match="an expanded view"):
        checkpoint.load(tmp_path / "x.pt")
