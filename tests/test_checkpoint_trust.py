"""A checkpoint can never steer cnnlab into running code, and nothing it holds can change silently: the
digest covers the whole checkpoint, and its structure is checked before any of it is used."""

from __future__ import annotations

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
