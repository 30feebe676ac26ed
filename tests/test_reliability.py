"""Nothing is lost: `cnnlab train` killed at random moments and resumed ends bit for bit where an
uninterrupted run ends, and a full disk or an I/O error while saving keeps the previous checkpoint.

The kill test drives real `python -m cnnlab train` processes. Kill moments are drawn from a seeded
generator and tied to what the run folder shows (the process has just started; config.json written, so
training has begun; last.pt just replaced, so an epoch has just ended), so they land in the same phases
whatever the machine's load. Three more moments are made exact by a wrapper that SIGKILLs its own process
half-way through writing a checkpoint, with a complete temporary file not yet renamed, and half-way
through copying best.pt to last.pt.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _reliability import (
    assert_one_line_error,
    assert_same_run,
    non_timing_metrics,
    run_cli,
    subprocess_env,
    tiny_argv,
)

from cnnlab import checkpoint, outfiles, report
from cnnlab.errors import CnnlabError
from cnnlab.training import runfolder

EPOCHS = 12
SEED = 20240607

# Runs `cnnlab ARGV...` and SIGKILLs itself at an exact moment of its first checkpoint write.
KILLER = """
import io, os, shutil, signal, sys
import torch

def die():
    os.kill(os.getpid(), signal.SIGKILL)

moment = sys.argv[1]
if moment == "mid-write":  # half of the checkpoint's bytes are in the temporary file, on disk
    real_save = torch.save
    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        die()
    torch.save = save
elif moment == "before-rename":  # the temporary file is complete and synced, not renamed yet
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".pt"):
            die()
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace
elif moment == "mid-copy":  # best.pt written, last.pt half copied from it
    def copyfileobj(src, dst, length=0):
        dst.write(src.read(os.fstat(src.fileno()).st_size // 2))
        dst.flush()
        die()
    shutil.copyfileobj = copyfileobj
from cnnlab.cli import main
sys.exit(main(sys.argv[2:]))
"""
EXACT = ("mid-write", "before-rename", "mid-copy")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[bytes], limit: float = 120.0) -> bool:
    """Poll `cond` until it holds (True) or the process ends first (False)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("the training process made no progress in 120 s")


def _check_on_disk(run: Path, last_position: tuple[int, int]) -> tuple[int, int]:
    """Every checkpoint on disk loads and rebuilds its model; last.pt never goes back in time."""
    position = last_position
    for path in sorted((run / "checkpoints").glob("*.pt")) if (run / "checkpoints").is_dir() else []:
        ckpt = checkpoint.load(path)  # raises CnnlabError on a torn or corrupt file
        checkpoint.build_model(ckpt)
        if path.name == "last.pt":
            position = (int(ckpt["epoch"]), int(ckpt["step"]))
            assert position >= last_position, f"last.pt went back from {last_position} to {position}"
            assert len(ckpt["metrics"]) == position[0]  # one metrics row per finished epoch
            if (run / "metrics.csv").is_file():  # written after the checkpoint: never ahead of it
                shown = non_timing_metrics(run / "metrics.csv")
                assert len(shown) <= len(ckpt["metrics"]), "metrics.csv is ahead of last.pt"
                for row, saved in zip(shown, ckpt["metrics"], strict=False):
                    assert all(float(v) == float(saved[k]) for k, v in row.items()), (row, saved)
    return position


def _attempt(
    plan: str, argv: list[str], run: Path, work: Path, rng: random.Random, epoch_s: float
) -> tuple[int, str]:
    """Start one `cnnlab train` process, stop it as `plan` says; (return code, where it was stopped)."""
    started = time.time_ns()
    last_before = _stamp(run / "checkpoints" / "last.pt")
    if plan in EXACT:
        cmd = [sys.executable, str(work / "killer.py"), plan, *argv]
    else:
        cmd = [sys.executable, "-m", "cnnlab", *argv]

    def training_started() -> bool:
        stamp = _stamp(run / "config.json")
        return stamp is not None and stamp[1] >= started

    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        where = plan
        if plan == "startup":
            time.sleep(rng.uniform(0.05, 1.0))  # python + torch imports alone take longer
            where = "training" if training_started() else "startup"
            proc.send_signal(signal.SIGKILL)
        elif plan == "training":
            delay = rng.uniform(0.0, 1.5 * epoch_s)
            if _wait_for(training_started, proc):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
        elif plan == "sigterm":  # mid-epoch, once the loop (and its SIGTERM handler) surely runs
            delay = rng.uniform(0.0, 0.8 * epoch_s)
            if _wait_for(lambda: _stamp(run / "checkpoints" / "last.pt") != last_before, proc):
                time.sleep(delay)
                proc.send_signal(signal.SIGTERM)
        elif plan == "epoch-end" and _wait_for(
            lambda: _stamp(run / "checkpoints" / "last.pt") != last_before, proc
        ):
            proc.send_signal(signal.SIGKILL)  # last.pt was just replaced; metrics.csv is written next
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    return proc.returncode, where


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, run = tmp_path / "reference", tmp_path / "run"
    code, _, err = run_cli(tiny_argv(ref, EPOCHS), capsys)  # uninterrupted, in this process
    assert code == 0, err
    epoch_s = statistics.median(float(r["epoch_seconds"]) for r in report.read_metrics(ref / "metrics.csv"))
    (tmp_path / "killer.py").write_text(KILLER)

    rng = random.Random(SEED)
    # Exact moments first: the first epoch always improves on "no best yet", so a best.pt copy happens.
    timed = ["startup"] * 3 + ["training"] * 3 + ["epoch-end"] * 2 + ["sigterm"]
    rng.shuffle(timed)
    plans = ["mid-copy", "mid-write", "before-rename", *timed]
    kills: list[tuple[str, str, int]] = []
    position = (-1, -1)
    for plan in plans:
        resume = (run / "checkpoints" / "last.pt").is_file()
        # No last.pt yet (killed before the first epoch ended): the same command starts the run again.
        argv = tiny_argv(run, EPOCHS, "--resume") if resume else tiny_argv(run, EPOCHS)
        code, where = _attempt(plan, argv, run, tmp_path, rng, epoch_s)
        kills.append((plan, where, code))
        assert code in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM, 0), kills
        position = _check_on_disk(run, position)
        assert not (run / "summary.txt").exists() or code == 0, kills  # an unfinished run never looks done
        if code == 0:
            break
    n_sigkill = sum(code == -signal.SIGKILL for _, _, code in kills)
    assert n_sigkill >= 10, kills
    phases = {where for _, where, code in kills if code == -signal.SIGKILL}
    assert phases >= {"startup", "training", "epoch-end", *EXACT}, kills
    assert any(code == 128 + signal.SIGTERM for _, _, code in kills), kills  # a graceful mid-epoch stop

    final = subprocess.run(
        [sys.executable, "-m", "cnnlab", *tiny_argv(run, EPOCHS, "--resume")],
        env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr
    print("kills (plan, phase seen, exit code):", kills)
    _check_on_disk(run, position)
    assert_same_run(ref, run)
    assert (run / "summary.txt").is_file()
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left


# ---------------------------------------------------------------------------------------------------------
# A full disk or an I/O error while saving


def _ckpt(value: float, n: int = 1000) -> dict[str, Any]:
    return {
        "format": checkpoint.FORMAT, "format_version": 1, "model_name": "alexnet_small", "model_options": {},
        "num_classes": 2, "in_channels": 1, "classes": ["a", "b"], "model": {"w": torch.full((n,), value)},
    }  # fmt: skip


class _FillingFile:
    """A real file that runs out of space after `budget` bytes, part-way through a write."""

    def __init__(self, f: Any, budget: int) -> None:
        self._f, self._budget = f, budget

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) > self._budget:
            self._f.write(data[: self._budget])
            self._budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= len(data)
        return int(self._f.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


def _full_disk_after(budget: int) -> Callable[..., Any]:
    real_open = open

    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return _FillingFile(real_open(path, mode, *args, **kwargs), budget)

    return fake_open


def _fail(err: int) -> Callable[..., Any]:
    def raise_it(*args: Any, **kwargs: Any) -> Any:
        raise OSError(err, os.strerror(err))

    return raise_it


FAILURES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    # torch's zip writer turns a write that fails part-way into a RuntimeError: still a full disk.
    "disk full in the header": lambda mp: mp.setattr(outfiles, "open", _full_disk_after(10), raising=False),
    "disk full mid-tensor": lambda mp: mp.setattr(outfiles, "open", _full_disk_after(3000), raising=False),
    "/dev/full": lambda mp: mp.setattr(
        outfiles,
        "open",
        lambda path, mode="r", **kw: open("/dev/full", "wb") if "x" in mode else open(path, mode, **kw),  # noqa: SIM115
        raising=False,
    ),
    "fsync EIO": lambda mp: mp.setattr(os, "fsync", _fail(errno.EIO)),
    "rename EIO": lambda mp: mp.setattr(os, "replace", _fail(errno.EIO)),
    "quota in torch.save": lambda mp: mp.setattr(torch, "save", _fail(errno.EDQUOT)),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failing_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    if failure == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    path = tmp_path / "last.pt"
    checkpoint.save(_ckpt(1.0), path)
    before = path.read_bytes()
    with monkeypatch.context() as mp:
        FAILURES[failure](mp)
        with pytest.raises(
            CnnlabError, match=r"could not write .*last\.pt: .*the previous file there is intact"
        ):
            checkpoint.save(_ckpt(2.0), path)
        if failure != "quota in torch.save":  # copying does not serialise
            with pytest.raises(CnnlabError, match="could not write"):
                checkpoint.copy(path, tmp_path / "best.pt")
    assert path.read_bytes() == before
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(1000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file, no best.pt


def test_ctrl_c_mid_save_removes_the_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    checkpoint.save(_ckpt(1.0), path)

    def interrupted(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(_ckpt(2.0), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(1000))


def test_a_programming_error_while_saving_is_not_called_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(TypeError("cannot pickle x")))
    with pytest.raises(TypeError):
        checkpoint.save(_ckpt(2.0), tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_mid_training_then_resume_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI stops with one line, the epoch-1 checkpoint stays, and a resume ends exactly where an
    uninterrupted run ends."""
    epochs = 3
    code, _, err = run_cli(tiny_argv(tmp_path / "ref", epochs), capsys)
    assert code == 0, err
    run = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def full_on_the_second(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1  # epoch 1 writes best.pt (then copies it), epoch 2 writes best.pt or last.pt
        if calls["n"] == 2:
            f.write(b"PK\x03\x04 part of a zip")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(obj, f, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(torch, "save", full_on_the_second)
        code, _, err = run_cli(tiny_argv(run, epochs), capsys)
    line = assert_one_line_error(code, err)
    assert "No space left on device" in line and "intact" in line
    assert checkpoint.load(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (run / "summary.txt").exists()
    assert len(non_timing_metrics(run / "metrics.csv")) == 1
    code, _, err = run_cli(tiny_argv(run, epochs, "--resume"), capsys)
    assert code == 0, err
    assert_same_run(tmp_path / "ref", run)


def test_a_start_killed_before_its_first_checkpoint_is_started_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a kill during start-up leaves (config.json, metrics.csv, an empty checkpoints/, a temporary
    file) is no run to resume: --resume says to rerun the command, and the same command then starts."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    runfolder.write_marker(run, checkpointed=False, new_run=True)  # a start writes its marker first
    (run / "config.json").write_text("{}")
    (run / "metrics.csv").write_text("epoch\n")
    (run / "checkpoints" / ".cnnlab-tmp-99999-0123456789abcdef").write_bytes(b"PK half")
    line = assert_one_line_error(*run_cli(tiny_argv(run, 1, "--resume"), capsys)[::2])
    assert "run the same command without --resume" in line
    code, _, err = run_cli(tiny_argv(run, 1), capsys)
    assert code == 0, err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert (run / "summary.txt").is_file()
