"""More robustness: the run folder's lock, signals during start-up, resuming on other data, decompression
bombs and 16/32-bit images (docs/guarantees.md)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _reliability import (
    assert_no_run_left,
    assert_one_line_error,
    run_cli,
    tiny_argv,
    write_idx_set,
)
from PIL import Image

from cnnlab import checkpoint, data, outfiles
from cnnlab.data import folder
from cnnlab.errors import CnnlabError
from cnnlab.predict import predict
from cnnlab.training import build as setup_mod
from cnnlab.training import records, runfolder

# ------------------------------------------------------------------------------------------ helpers


def snapshot(root: Path, lock: bool = True) -> dict[str, Any]:
    """Every file and folder under `root` with its bytes and modification time: 'nothing changed'. With
    lock=False, the lock file counts by name only: a command that took the lock wrote its pid there."""
    found: dict[str, Any] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        found[rel] = (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        if rel == runfolder.LOCK_NAME and not lock:
            found[rel] = None
    return found


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete one-epoch tiny run (copied by the tests that change it)."""
    out = tmp_path_factory.mktemp("done") / "run"
    code = _main(tiny_argv(out, 1))
    assert code == 0
    return out


def _main(argv: list[str]) -> int:
    from cnnlab.cli import main

    return main(argv)


@pytest.fixture
def lock_holder() -> Iterator[Any]:
    """Starts a process that holds RUN/.lock as a running `cnnlab train` would, and writes its pid."""
    procs: list[subprocess.Popen[str]] = []

    def hold(run: Path) -> subprocess.Popen[str]:
        code = (
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(run / runfolder.LOCK_NAME)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------- the run lock


def test_a_folder_in_use_is_refused_and_left_untouched(
    tmp_path: Path, finished_run: Path, lock_holder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    holder = lock_holder(run)
    before = snapshot(run)
    attempts = [
        tiny_argv(run, 2, "--resume"),  # continuing it
        tiny_argv(run, 1, "--overwrite"),  # replacing it: --overwrite respects the lock too
        tiny_argv(run, 1),  # starting over it
    ]
    for argv in attempts:
        code, _, err = run_cli(argv, capsys)
        line = assert_one_line_error(code, err)
        assert f"run folder {run} is in use by another cnnlab train (pid {holder.pid})" in line, line
        assert "wait for it or choose another --out" in line
        assert snapshot(run) == before, argv
    # A folder in its first epoch (config.json, no checkpoint yet) is not restarted under its owner.
    young = tmp_path / "young"
    young.mkdir()
    runfolder.write_marker(young, checkpointed=False, new_run=True)  # a start writes its marker first
    (young / "config.json").write_text("{}\n")
    lock_holder(young)
    before = snapshot(young)
    code, _, err = run_cli(tiny_argv(young, 1), capsys)
    assert "is in use by another cnnlab train" in assert_one_line_error(code, err)
    assert snapshot(young) == before
    # The holder dies (a kill: flock is released by the kernel): the run resumes normally.
    holder.kill()
    holder.wait()
    code, _, err = run_cli(tiny_argv(run, 2, "--resume"), capsys)
    assert code == 0, err
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 2
    assert (run / runfolder.LOCK_NAME).read_text().strip() == str(os.getpid())  # the last holder's pid


def test_the_lock_is_held_for_the_whole_run_and_released_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from cnnlab.training import loop as loop_mod

    seen: list[bool] = []
    real = loop_mod.Loop.run_epochs

    def probing(self: Any) -> str | None:
        fd = os.open(self.run.folder.root / runfolder.LOCK_NAME, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(False)  # we could take it: nobody held it
        except BlockingIOError:
            seen.append(True)
        finally:
            os.close(fd)
        return real(self)

    monkeypatch.setattr(loop_mod.Loop, "run_epochs", probing)
    out = tmp_path / "run"
    assert _main(tiny_argv(out, 1)) == 0
    assert seen == [True]
    fd = os.open(out / runfolder.LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when train() returned
    os.close(fd)


# ------------------------------------------------------------------------------ signals at start-up


@pytest.fixture
def no_default_sigterm() -> Iterator[None]:
    """Without cnnlab's handler, a SIGTERM to this process fails the test instead of killing pytest."""

    def unhandled(signum: int, frame: Any) -> None:
        raise AssertionError(f"{signal.Signals(signum).name} reached the default handler")

    old = signal.signal(signal.SIGTERM, unhandled)
    yield
    signal.signal(signal.SIGTERM, old)


@pytest.mark.usefixtures("no_default_sigterm")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_loading_data_stops_at_once_writing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sig: signal.Signals
) -> None:
    real_load = data.load
    calls: list[str] = []

    def load_then_signal(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1])
        ds = real_load(*args, **kwargs)
        os.kill(os.getpid(), sig)  # delivered before the next bytecode: during the set-up
        return ds

    monkeypatch.setattr(data, "load", load_then_signal)
    out = tmp_path / "run"
    code, _, err = run_cli(tiny_argv(out, 1), capsys)
    assert code == 128 + sig, err
    assert err.splitlines() == [
        f"cnnlab: stopped by {sig.name} before the first training step; nothing was written; "
        "run the same command again"
    ]
    assert calls == ["train"]  # it stopped at once: the validation set was never read
    assert_no_run_left(out)


@pytest.mark.usefixtures("no_default_sigterm")
def test_a_signal_before_the_first_step_of_a_resume_leaves_the_run_as_it_was(
    tmp_path: Path,
    finished_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = snapshot(run, lock=False)
    real_build = setup_mod.models.create_from

    def build_then_signal(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(setup_mod.models, "create_from", build_then_signal)
    code, _, err = run_cli(tiny_argv(run, 2, "--resume"), capsys)
    assert code == 143, err
    assert err.splitlines() == [
        "cnnlab: stopped by SIGTERM before the first training step; nothing was written; "
        f"continue with: cnnlab train --out {run} --resume"
    ]
    assert snapshot(run, lock=False) == before  # the summary of the complete run is still there
    monkeypatch.undo()
    code, _, err = run_cli(tiny_argv(run, 2, "--resume"), capsys)
    assert code == 0, err


@pytest.mark.usefixtures("no_default_sigterm")
def test_a_signal_while_the_folder_is_written_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_write = records.write_config

    def write_with_signal(*args: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # mid-way through the folder's first writes
        real_write(*args)

    monkeypatch.setattr(records, "write_config", write_with_signal)
    out = tmp_path / "run"
    code, _, err = run_cli(tiny_argv(out, 1), capsys)
    assert code == 143, err
    assert "before the first training step; nothing to save; run the same command again" in err
    assert (out / "config.json").is_file() and (out / "metrics.csv").is_file()  # written whole
    assert not list(out.rglob("*.pt")) and not list(out.rglob(f"{outfiles.TMP_PREFIX}*"))
    monkeypatch.undo()
    assert run_cli(tiny_argv(out, 1), capsys)[0] == 0  # the same command starts the run cleanly


# ------------------------------------------------------------------------------ resume on other data


def test_resume_refuses_data_that_changed_and_accepts_a_moved_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = write_idx_set(tmp_path / "original")
    run = tmp_path / "run"

    def argv(folder: Path, *extra: str) -> list[str]:
        return tiny_argv(
            run, 2, "--dataset", "mnist", "--data-dir", str(folder), "--batch-size", "16", *extra
        )

    code, _, err = run_cli([*argv(original), "--epochs", "1"], capsys)
    assert code == 0, err
    before = snapshot(run, lock=False)
    # The paper recipe holds a validation split out of the training files; t10k is the test set.
    for split, prefix in (("training", "train"), ("test", "t10k")):
        other = tmp_path / f"other-{prefix}"
        shutil.copytree(original, other)
        images = other / f"{prefix}-images-idx3-ubyte"
        raw = bytearray(images.read_bytes())
        raw[-1] ^= 0xFF  # one pixel of one image: same count, same shape, other content
        images.write_bytes(bytes(raw))
        code, _, err = run_cli(argv(other, "--resume"), capsys)
        line = assert_one_line_error(code, err)
        assert f"--resume: the {split} data of 'mnist' differs from the data the run in {run} used" in line
        assert "point --data-dir at the run's data" in line
        assert snapshot(run, lock=False) == before
    moved = tmp_path / "moved"
    shutil.copytree(original, moved)
    code, _, err = run_cli(argv(moved, "--resume"), capsys)
    assert code == 0, err
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 2


# ------------------------------------------------------------------------ decompression bombs, 16 bit


def _image_tree(root: Path, extra: dict[str, Image.Image]) -> Path:
    """train/ and val/ with classes a and b (a small grey image each), plus `extra` files by path."""
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            Image.fromarray(np.full((8, 8), 60 if cls == "a" else 200, np.uint8)).save(
                root / split / cls / "x.png"
            )
    for rel, im in extra.items():
        im.save(root / rel)
    return root


@pytest.fixture(scope="module")
def ckpt(finished_run: Path) -> str:
    return str(finished_run / "checkpoints" / "best.pt")


def test_an_image_over_the_pixel_limit_is_a_bad_image(
    tmp_path: Path, ckpt: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 40 x 40 = 1600 pixels against a limit of 1000: Pillow alone would only warn (up to 2000) and decode.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    big = Image.fromarray(np.zeros((40, 40), np.uint8))
    root = _image_tree(tmp_path / "imgs", {"train/b/big.png": big})
    with pytest.raises(CnnlabError, match=r"big\.png: unreadable image .*decompression-bomb limit of 1000"):
        data.load(f"folder:{root}", "train")
    ds = data.load(f"folder:{root}", "train", skip_bad_images=True)
    assert isinstance(ds, data.FolderDataset)
    assert ds.skipped == [str(root / "train" / "b" / "big.png")] and len(ds) == 2
    assert ds.identity()["skipped"] == 1
    # predict: one line naming the file, and nothing decoded.
    code, _, err = run_cli(["predict", ckpt, str(root / "train" / "b" / "big.png")], capsys)
    line = assert_one_line_error(code, err)
    assert "big.png: cannot decode the image (40 x 40 = 1600 pixels is over the decompression-bomb" in line
    with pytest.raises(CnnlabError, match="decompression-bomb"):
        folder.read_image(root / "train" / "b" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # under the limit: an image like any other
    assert folder.verify_image(str(root / "train" / "b" / "big.png")) is None
    assert len(predict(ckpt, [str(root / "train" / "b" / "big.png")])) == 1


def test_deep_images_are_scaled_not_clipped_in_folders_and_predict(tmp_path: Path, ckpt: str) -> None:
    """16-bit grey (I;16 PNG, 32-bit I TIFF holding 16-bit values) scales 0..65535 to 0..255; float (F)
    follows Pillow's 0..255 convention. All decode to the 8-bit image they stand for."""
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    eight[0, :2] = (0, 255)
    # Not exact multiples of 257 (noise under half a step): the scaling must round, not truncate or clip.
    noise = rng.integers(-128, 129, (8, 8))
    sixteen = np.clip(eight.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)
    files = {
        "train/b/deep.png": Image.fromarray(sixteen),
        "train/b/int.tiff": Image.fromarray(sixteen.astype(np.int32)),
        "train/b/float.tiff": Image.fromarray(eight.astype(np.float32)),
        "train/b/plain.png": Image.fromarray(eight),
    }
    root = _image_tree(tmp_path / "imgs", files)
    modes = {rel: Image.open(root / rel).mode for rel in files}
    assert modes == {
        "train/b/deep.png": "I;16",
        "train/b/int.tiff": "I",
        "train/b/float.tiff": "F",
        "train/b/plain.png": "L",
    }
    ds = data.load(f"folder:{root}", "train")
    assert isinstance(ds, data.FolderDataset)
    want = torch.from_numpy(eight)
    by_name = {Path(p).name: i for i, (p, _) in enumerate(ds.samples)}
    for name in ("deep.png", "int.tiff", "float.tiff", "plain.png"):
        x, _ = ds[by_name[name]]
        assert x.shape == (3, 8, 8)
        assert torch.equal(x[0], want) and torch.equal(x[2], want), name  # grey in every channel
        assert torch.equal(ds.read(by_name[name], 4), ds.read(by_name["plain.png"], 4)), name  # resized
    # predict (a grey 8x8 run): each deep file gets exactly the answer of its 8-bit twin.
    paths = [str(root / rel) for rel in files]
    results = predict(ckpt, paths, top=10)
    probs = [[t["prob"] for t in r["top"]] for r in results]
    assert probs[0] == probs[1] == probs[2] == probs[3]
