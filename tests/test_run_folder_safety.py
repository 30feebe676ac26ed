"""Nothing a user owns is ever lost: `cnnlab train --out DIR` deletes or replaces only what it can prove it
wrote (the marker file `.cnnlab-run.json` it creates first), and never a user's file beside it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from _reliability import assert_one_line_error, run_cli, tiny_argv
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab import checkpoint
from cnnlab.training import runfolder


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root` (hidden ones too) with its bytes; folders and links as None."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


def finished_run(path: Path, capsys: pytest.CaptureFixture[str], epochs: int = 1, *extra: str) -> Path:
    code, _, err = run_cli(tiny_argv(path, epochs, *extra), capsys)
    assert code == 0, err
    return path


USER_FOLDERS = {
    "a git checkout": {".git/HEAD": "ref: refs/heads/main\n", ".env": "SECRET=1\n"},
    "only the user's config.json": {"config.json": '{"mine": true}\n'},
    "only TensorBoard logs": {"tensorboard/events.out.tfevents.1.host": "logs"},
    "cnnlab-looking files": {
        "config.json": "{}",
        "metrics.csv": "epoch\n",
        "curves.png": "png",
        "checkpoints/best.pt": "weights",
    },
}


@pytest.mark.parametrize("case", sorted(USER_FOLDERS))
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_cnnlab_did_not_make_is_never_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, overwrite: bool
) -> None:
    out = tmp_path / "mine"
    for rel, text in USER_FOLDERS[case].items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    before = tree(out)
    line = assert_one_line_error(
        *run_cli(tiny_argv(out, 1, *(["--overwrite"] if overwrite else [])), capsys)[::2]
    )
    assert "was not made by cnnlab train" in line and str(out) in line
    assert tree(out) == before


def test_overwrite_refuses_a_run_folder_holding_a_users_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished_run(tmp_path / "run", capsys)
    (out / "notes.md").write_text("my notes about this run")
    (out / "checkpoints" / "epoch3-keep.pt").write_bytes(b"mine")
    before = tree(out)
    line = assert_one_line_error(*run_cli(tiny_argv(out, 1, "--overwrite"), capsys)[::2])
    assert "holds files cnnlab did not write (checkpoints/epoch3-keep.pt, notes.md)" in line
    assert tree(out) == before


def test_overwrite_replaces_a_run_in_place_keeping_the_folder_and_a_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = finished_run(tmp_path / "real", capsys)
    first_id = runfolder.read_marker(real)["run_id"]  # type: ignore[index]
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    code, _, err = run_cli(tiny_argv(link, 2, "--overwrite"), capsys)
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert checkpoint.load(real / "checkpoints" / "last.pt")["epoch"] == 2
    marker = runfolder.read_marker(real)
    assert marker is not None and marker["run_id"] != first_id and marker["checkpointed"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # no .real.replaced-PID left


def test_a_finished_run_whose_last_checkpoint_was_deleted_keeps_its_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished_run(tmp_path / "run", capsys)
    (out / "checkpoints" / "last.pt").unlink()
    before = tree(out)
    line = assert_one_line_error(*run_cli(tiny_argv(out, 1), capsys)[::2])
    assert "already exists" in line and "--overwrite" in line
    assert tree(out) == before


def test_a_killed_start_is_restarted_only_when_its_folder_is_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A start killed before its first checkpoint leaves config.json, metrics.csv and maybe best.pt under a
    marker saying it never checkpointed: the same command starts again there. Without the marker the same
    files could be anyone's, and are left alone."""
    for marked in (True, False):
        out = tmp_path / f"run-{marked}"
        (out / "checkpoints").mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "checkpoints" / "best.pt").write_bytes(b"half a run")
        if marked:
            runfolder.write_marker(out, checkpointed=False, new_run=True)
        before = tree(out)
        code, _, err = run_cli(tiny_argv(out, 1), capsys)
        if marked:
            assert code == 0, err
            assert checkpoint.load(out / "checkpoints" / "best.pt")["epoch"] == 1
        else:
            assert_one_line_error(code, err)
            assert tree(out) == before


def test_nothing_outside_the_run_folder_is_ever_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No cleanup of "leftovers from older versions": a sibling named like one stays, whatever it holds."""
    out = finished_run(tmp_path / "run", capsys)
    siblings = [tmp_path / ".run.replaced-old", tmp_path / f".run.replaced-{os.getpid() + 1}"]
    shutil.copytree(out, siblings[0])  # even one holding nothing but a run's files
    (siblings[1] / "thesis").mkdir(parents=True)
    before = {s.name: tree(s) for s in siblings}
    code, _, err = run_cli(tiny_argv(out, 1, "--overwrite"), capsys)
    assert code == 0, err
    assert {s.name: tree(s) for s in siblings} == before


@pytest.mark.parametrize("resume", [False, True])
def test_a_users_lock_file_in_a_folder_cnnlab_did_not_make_is_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], resume: bool
) -> None:
    """The folder is judged before any lock is taken: a user's own `.lock`, or a `.lock` link to a file
    outside, stays byte for byte as it was."""
    outside = tmp_path / "precious.txt"
    outside.write_text("the user's data\n")
    for how in ("file", "link"):
        out = tmp_path / f"mine-{how}"
        (out / "checkpoints").mkdir(parents=True)
        (out / "checkpoints" / "last.pt").write_bytes(b"not a run")
        if how == "file":
            (out / ".lock").write_text("my lock, not yours\n")
        else:
            (out / ".lock").symlink_to(outside)
        before = tree(out)
        assert_one_line_error(*run_cli(tiny_argv(out, 1, *(["--resume"] if resume else [])), capsys)[::2])
        assert tree(out) == before and (out / ".lock").is_symlink() == (how == "link")
        assert outside.read_text() == "the user's data\n"


def test_a_lock_link_in_a_run_folder_is_never_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished_run(tmp_path / "run", capsys)
    outside = tmp_path / "precious.txt"
    outside.write_text("the user's data\n")
    (out / ".lock").unlink()
    (out / ".lock").symlink_to(outside)
    for extra in (["--epochs", "2", "--resume"], ["--overwrite"]):
        line = assert_one_line_error(*run_cli([*tiny_argv(out, 1), *extra], capsys)[::2])
        assert ".lock" in line
        assert outside.read_text() == "the user's data\n" and (out / ".lock").is_symlink()
    # A file that is not the lock cnnlab writes (a pid) is not truncated either.
    (out / ".lock").unlink()
    (out / ".lock").write_text("notes the user keeps here\n")
    line = assert_one_line_error(*run_cli([*tiny_argv(out, 2), "--resume"], capsys)[::2])
    assert "not cnnlab's lock file" in line
    assert (out / ".lock").read_text() == "notes the user keeps here\n"


def test_resume_writes_only_into_a_folder_cnnlab_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder holding checkpoints/last.pt and the user's own config.json, summary.txt and metrics.csv,
    but no marker, is not resumed: nothing in it is replaced, and no marker claims it."""
    run = finished_run(tmp_path / "run", capsys)
    out = tmp_path / "mine"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "last.pt", out / "checkpoints" / "last.pt")
    for name in ("config.json", "summary.txt", "metrics.csv"):
        (out / name).write_text(f"the user's own {name}\n")
    before = tree(out)
    line = assert_one_line_error(*run_cli(tiny_argv(out, 2, "--resume"), capsys)[::2])
    assert "was not made by cnnlab train" in line
    assert tree(out) == before


LOOK_ALIKES = {".env.tmpl": b"KEY=\n", "checkpoints/.notes.tmp.txt": b"my notes\n", ".last.pt.tmp123": b"x"}


def test_files_named_like_temporaries_are_never_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only regular files named exactly `.cnnlab-tmp-PID-RANDOM` are cnnlab's temporaries. Files and a
    folder named like older temporaries are the user's: --resume keeps them (and does not crash on the
    folder), --overwrite refuses the folder holding them."""
    out = finished_run(tmp_path / "run", capsys)
    for rel, data in LOOK_ALIKES.items():
        (out / rel).write_bytes(data)
    (out / ".cache.tmp").mkdir()
    (out / ".cache.tmp" / "kept").write_text("mine")
    (out / ".cnnlab-tmp-1-0123456789abcdef").mkdir()  # a folder is never a temporary file
    stale = out / "checkpoints" / ".cnnlab-tmp-99999-0123456789abcdef"
    stale.write_bytes(b"PK half")  # what a killed write leaves
    line = assert_one_line_error(*run_cli(tiny_argv(out, 1, "--overwrite"), capsys)[::2])
    assert ".cache.tmp" in line and ".env.tmpl" in line
    code, _, err = run_cli(tiny_argv(out, 2, "--resume"), capsys)
    assert code == 0, err
    for rel, data in LOOK_ALIKES.items():
        assert (out / rel).read_bytes() == data, rel
    assert (out / ".cache.tmp" / "kept").read_text() == "mine"
    assert (out / ".cnnlab-tmp-1-0123456789abcdef").is_dir()
    assert not stale.exists()


def test_resume_with_fewer_epochs_than_trained_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = finished_run(tmp_path / "run", capsys, 3, "--schedule", "plateau")
    before = tree(out)
    line = assert_one_line_error(*run_cli(tiny_argv(out, 2, "--resume"), capsys)[::2])
    assert "--epochs 2 is fewer than the 3 epochs this run has trained" in line
    assert {k: v for k, v in tree(out).items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }
    assert json.loads((out / "config.json").read_text())["config"]["epochs"] == 3


def _image_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8) // 2 + 100 * c
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def test_an_image_folder_run_resumes_from_the_folders_new_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _image_folder(tmp_path / "photos")
    out = tmp_path / "run"

    def argv(folder: Path, *extra: str) -> list[str]:
        args = tiny_argv(out, 2, "--dataset", f"folder:{folder}", "--batch-size", "4", *extra)
        return [a for a in args if a not in ("--limit-train", "128", "--limit-val", "64")]

    code, _, err = run_cli([*argv(first), "--stop-after", "2"], capsys)
    assert code == 0, err
    moved = tmp_path / "archive" / "photos"
    moved.parent.mkdir()
    first.rename(moved)
    other = _image_folder(tmp_path / "other", per_class=7)  # other files: a folder is known by its file list
    line = assert_one_line_error(*run_cli(argv(other, "--resume"), capsys)[::2])
    assert "differs from the data the run" in line
    code, _, err = run_cli(argv(moved, "--resume"), capsys)
    assert code == 0, err
    assert checkpoint.load(out / "checkpoints" / "last.pt")["epoch"] == 2
    assert json.loads((out / "config.json").read_text())["config"]["dataset"] == f"folder:{moved}"


def test_train_takes_the_same_data_flags_as_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bad-image error advises --skip-bad-images; `cnnlab train` must accept it (and skip the file)."""
    photos = _image_folder(tmp_path / "photos")
    (photos / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    argv = tiny_argv(out, 1, "--dataset", f"folder:{photos}", "--batch-size", "4")
    argv = [a for a in argv if a not in ("--limit-train", "128", "--limit-val", "64")]
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "--skip-bad-images" in line
    code, _, err = run_cli([*argv, "--skip-bad-images", "--val-split", "0"], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["data"]["train"]["count"] == 12  # 13 files, 1 bad


@settings(max_examples=200, deadline=None, derandomize=True)
@example(".cnnlab-tmp-12-0123456789abcdef")  # a real one: removed
@example(".cnnlab-tmp-12-0123456789abcdef.txt")  # near misses: kept
@example(".cnnlab-tmp-12-0123456789ABCDEF")
@example(".cnnlab-tmp--0123456789abcdef")
@example(".last.pt.tmp123")
@example(".env.tmpl")
@given(
    name=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
        min_size=1,
        max_size=40,
    )
)
def test_only_names_cnnlab_makes_are_temporaries(name: str) -> None:
    """Property: a name counts as a cnnlab temporary only in the exact form `.cnnlab-tmp-PID-RANDOM`; every
    name temp_name() makes does, and a file of any other name survives remove_temporaries."""
    import re
    import tempfile

    from cnnlab import outfiles

    exact = re.fullmatch(r"\.cnnlab-tmp-[0-9]{1,10}-[0-9a-f]{16}", name) is not None
    assert outfiles.is_temporary(name) == exact
    assert outfiles.is_temporary(outfiles.temp_name())
    if name in (".", ".."):
        return
    with tempfile.TemporaryDirectory() as folder:
        try:
            (Path(folder) / name).write_bytes(b"the user's")
        except OSError:  # a name the file system refuses (too long in bytes)
            return
        outfiles.remove_temporaries(Path(folder))
        assert (Path(folder) / name).exists() != exact
