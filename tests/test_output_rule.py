"""One rule for every command that writes files (cnnlab/outfiles.py): an existing file is replaced only with
--force; a command's own input never, even with --force; two outputs of one command never share a name;
only regular files are replaced; a command writing several files writes all of them or none."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from _reliability import assert_one_line_error, run_cli, tiny_argv
from PIL import Image

from cnnlab import outfiles
from cnnlab.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("outrule")
    assert main(tiny_argv(root / "run", 1, "--input-size", "28")) == 0
    return root / "run" / "checkpoints" / "last.pt"


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (28, 28), 90).save(path, format="PNG")
    return path


def _commands(ckpt: Path, out: Path, img: Path) -> dict[str, tuple[list[str], list[Path]]]:
    """Each writing command, and the files it writes (all inside `out`)."""
    run = ckpt.parent.parent
    return {
        "export": (["export", str(ckpt), "--format", "safetensors", "-o", str(out / "m.st")], [out / "m.st"]),
        "predict --csv": (["predict", str(ckpt), str(img), "--csv", str(out / "p.csv")], [out / "p.csv"]),
        "filters": (["filters", str(ckpt), "-o", str(out / "f.png")], [out / "f.png"]),
        "activations": (["activations", str(ckpt), str(img), "-o", str(out / "a.png")], [out / "a.png"]),
        "occlusion": (["occlusion", str(ckpt), str(img), "-o", str(out / "o.png"), "--device", "cpu"],
                      [out / "o.png"]),
        "gradcam": (["gradcam", str(ckpt), str(img), "-o", str(out)], [out / f"{img.stem}-gradcam.png"]),
        "mistakes": (["mistakes", str(ckpt), "-o", str(out / "w.png"), "--dataset", "digits",
                      "--limit", "20"],
                     [out / "w.png"]),
        "diagram": (["diagram", "alexnet_small", "--input-size", "1x28x28", "-o", str(out / "d.svg")],
                    [out / "d.svg"]),
        "eval": (["eval", str(ckpt), "--limit", "20", "--device", "cpu", "--out", str(out)],
                 [out / "confusion.png", out / "per_class.csv", out / "eval.json"]),
        "compare": (["compare", "alexnet_small", "--no-timing", "--out", str(out)],
                    [out / "compare.json", out / "compare.txt", out / "compare.png"]),
        "report -o": (["report", str(run), "-o", str(out / "r.html"), "--mistakes", "0", "--queries", "0",
                       "--gradcams", "0"], [out / "r.html"]),
    }  # fmt: skip


@pytest.mark.parametrize("command", sorted(_commands(Path("c"), Path("o"), Path("i.png"))))
def test_no_command_replaces_an_existing_file_without_force(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    out, img = tmp_path / "out", _image(tmp_path / "in" / "x.png")
    argv, files = _commands(ckpt, out, img)[command]
    out.mkdir()
    files[-1].write_bytes(b"the user's own file")  # one of them is enough to refuse the whole command
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "already exists" in line and "--force" in line, line
    assert sorted(p.name for p in out.iterdir()) == [files[-1].name]
    assert files[-1].read_bytes() == b"the user's own file"


def test_force_replaces_an_existing_output(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, img = tmp_path / "out", _image(tmp_path / "in" / "x.png")
    for command in ("activations", "eval"):
        argv, files = _commands(ckpt, out, img)[command]
        out.mkdir(exist_ok=True)
        files[0].write_bytes(b"old")
        code, _, err = run_cli([*argv, "--force"], capsys)
        assert code == 0, err
        assert all(f.is_file() for f in files) and files[0].read_bytes() != b"old"


def test_no_command_replaces_its_own_input_even_with_force(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = _image(tmp_path / "x.png")
    as_png = tmp_path / "ckpt.png"  # a checkpoint named like the picture a command writes
    shutil.copy(ckpt, as_png)
    in_eval = tmp_path / "ev" / "eval.json"
    in_eval.parent.mkdir()
    shutil.copy(ckpt, in_eval)
    attempts = [
        ["predict", str(ckpt), str(img), "--csv", str(ckpt)],  # the checkpoint it just read
        ["predict", str(ckpt), str(img), "--csv", str(img)],  # the image it read
        ["filters", str(as_png), "-o", str(as_png)],
        ["filters", str(as_png), "-o", str(tmp_path / "." / "ckpt.png")],
        ["activations", str(ckpt), str(img), "-o", str(img)],
        ["occlusion", str(ckpt), str(img), "-o", str(img)],
        ["gradcam", str(tmp_path / "x-gradcam.png"), str(img), "-o", str(tmp_path)],
        ["eval", str(in_eval), "--limit", "5", "--out", str(in_eval.parent)],
    ]
    shutil.copy(ckpt, tmp_path / "x-gradcam.png")
    for argv in attempts:
        before = {p: p.read_bytes() for p in (ckpt, img, as_png, in_eval, tmp_path / "x-gradcam.png")}
        line = assert_one_line_error(*run_cli([*argv, "--force"], capsys)[::2])
        assert "inputs" in line and "even with --force" in line, (argv, line)
        assert {p: p.read_bytes() for p in before} == before, argv


def test_only_regular_files_are_replaced(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipe (or a device node: `-o /dev/null --force`) is refused, never replaced by a regular file."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for argv in (
        ["export", str(ckpt), "--format", "safetensors", "-o", str(fifo), "--force"],
        ["predict", str(ckpt), str(_image(tmp_path / "x.png")), "--csv", str(fifo), "--force"],
    ):
        line = assert_one_line_error(*run_cli(argv, capsys)[::2])
        assert "replaces only regular files" in line
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_gradcam_never_writes_two_outputs_to_one_name(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [_image(tmp_path / "in" / n) for n in ("a.png", "b/a.png", "a-1.png", "c/a-1.png")]
    code, out, err = run_cli(["gradcam", str(ckpt), *map(str, images), "-o", str(tmp_path / "g")], capsys)
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "g").iterdir())
    assert len(written) == 4 and len(set(written)) == 4, written
    assert out.count("wrote ") == 4


def _fail_on_open(n: int) -> Any:
    """outfiles' `open` for new temporary files: the n-th one fails with ENOSPC (a full disk part-way)."""
    real, seen = open, [0]

    def fake(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "x" in mode:
            seen[0] += 1
            if seen[0] >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, mode, *args, **kwargs)

    return fake


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_a_multi_file_command_on_a_full_disk_leaves_none_of_its_files(
    ckpt: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    out = tmp_path / "new" / "out"
    argv, _ = _commands(ckpt, out, _image(tmp_path / "x.png"))[command]
    monkeypatch.setattr(outfiles, "open", _fail_on_open(3), raising=False)  # the third file fails
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "No space left on device" in line
    assert not (tmp_path / "new").exists()  # neither its files nor the folders it made


def test_reproduce_never_replaces_a_users_report_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my own report")
    argv = ["reproduce", "lrn", "--budget", "tiny", "--out", str(out), "--runs", str(tmp_path / "runs")]
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "did not write" in line and "--force" in line
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "my own report"
    assert not (tmp_path / "runs").exists()
