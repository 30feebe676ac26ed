"""Stopping safely: atomic checkpoint writes, a failing disk, SIGTERM in a real process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import tiny  # tests/ is on sys.path (no __init__.py)

from cnnlab import checkpoint
from cnnlab.errors import CnnlabError
from cnnlab.training import train


def _ckpt(value: float) -> dict[str, Any]:
    return {
        "format": checkpoint.FORMAT, "format_version": 1, "model_name": "m", "model_options": {},
        "num_classes": 2, "in_channels": 1, "classes": ["a", "b"], "model": {"w": torch.full((3,), value)},
    }  # fmt: skip


def test_a_write_interrupted_midway_leaves_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    checkpoint.save(_ckpt(1.0), path)

    def dies_halfway(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(CnnlabError, match="No space left on device; the previous file there is intact"):
        checkpoint.save(_ckpt(2.0), path)
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind


def test_a_full_disk_during_training_stops_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def full_after_one(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_after_one)
    with pytest.raises(CnnlabError, match=r"could not write .*(last|best)\.pt: No space left"):
        train(tiny(tmp_path / "run", epochs=3))
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "run" / "summary.txt").exists()


def test_corrupt_and_foreign_checkpoints_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CnnlabError, match="corrupt"):
        checkpoint.load(bad)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CnnlabError, match="not a cnnlab checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    with pytest.raises(CnnlabError, match="not found"):
        checkpoint.load(tmp_path / "missing.pt")


@pytest.mark.slow
def test_sigterm_saves_a_resumable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cnnlab", "train", "--model", "alexnet_small", "--dataset", "digits",
           "--recipe", "paper", "--epochs", "200", "--batch-size", "16", "--input-size", "8",
           "--model-opt", "width=0.25", "--out", str(out), "--progress", "lines"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until it is inside an epoch
        seen.append(line)
        if " step " in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=120)
    text = "".join(seen) + rest + err
    assert proc.returncode == 128 + signal.SIGTERM, text
    assert "stopped by SIGTERM" in text and "--resume" in text
    ckpt = checkpoint.load(out / "checkpoints" / "last.pt")
    assert ckpt["step"] > 0 and ckpt["partial"]["count"] == ckpt["step"] * 16  # the mid-epoch position
    assert not (out / "summary.txt").exists()
    resumed = train({"out": str(out), "resume": True, "stop_after": 2, "progress": "none"})
    after = checkpoint.load(out / "checkpoints" / "last.pt")
    assert resumed.stopped == "stop_after"
    assert (after["epoch"], after["step"]) == (ckpt["epoch"], ckpt["step"] + 2)


def test_a_second_ctrl_c_while_saving_waits_for_the_checkpoint_and_says_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from _reliability import run_cli, tiny_argv

    real_save = torch.save

    def impatient_user(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, and again, while the checkpoint is being written
        os.kill(os.getpid(), signal.SIGINT)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", impatient_user)
    code, _, err = run_cli(tiny_argv(tmp_path / "run", 2), capsys)
    assert code == 130 and err.splitlines() == ["cnnlab: interrupted"], err
    saved = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")  # written whole
    assert saved["epoch"] == 1


def test_a_closed_stdout_never_stops_a_run(tmp_path: Path) -> None:
    """`cnnlab train ... | head -1`: the reader goes away after one line; the run still finishes."""
    from _reliability import subprocess_env, tiny_argv

    argv = [sys.executable, "-m", "cnnlab", *tiny_argv(tmp_path / "run", 2)]
    argv[argv.index("--progress") + 1] = "lines"
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert err == ""
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2
    assert (tmp_path / "run" / "summary.txt").is_file()
