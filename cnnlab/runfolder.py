"""The run folder: who may write it (`RunLock`) and when it may be created, reused or replaced.

A run folder is written by one `cnnlab train` at a time. `check_dir` refuses a folder that may not be used,
touching nothing; `prepare_dir` then, under the folder's lock, looks again and creates (or replaces) it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError

if sys.platform != "win32":
    import fcntl

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive `flock` on RUN/.lock, held by rank 0 for the whole run, so that a second `cnnlab train`
    on the same folder is refused before it changes anything. The kernel drops the lock when its process
    ends, even by SIGKILL, so a killed run resumes without any cleanup. The file holds the holder's pid,
    for the message."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.folder: Path | None = None

    def acquire(self, folder: Path, create: bool) -> None:
        """Lock `folder` (no-op when held); without `create`, only if it already has a lock file."""
        if self.fd is not None and self.folder == folder:
            return
        self.release()
        if sys.platform == "win32":  # pragma: no cover - no flock; Windows runs go unlocked
            return
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except OSError:
            if create:
                raise
            return  # no lock file (a new folder, or not a run folder): nothing holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return  # a file system without locks (some network mounts): run unlocked, as before
            raise CnnlabError(
                f"run folder {folder} is in use by another cnnlab train"
                f"{f' (pid {pid})' if pid.isdigit() else ''}; wait for it or choose another --out"
            ) from None
        self.fd, self.folder = fd, folder
        # The pid is only for the message: failing to write it (a full disk) is no reason to stop.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = self.folder = None


# What `cnnlab train` itself puts in a run folder (temporary files are hidden, `.NAME.tmpPID`).
_RUN_ENTRIES = frozenset(
    {"config.json", "metrics.csv", "curves.png", "summary.txt", "checkpoints", "tensorboard"}
)


def never_checkpointed(out: Path) -> bool:
    """A folder holding only what a `cnnlab train` start writes before its first last.pt (a start that was
    killed or failed, at the latest between best.pt and last.pt of epoch 1): starting the same run again
    there loses nothing."""
    names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    if not names <= _RUN_ENTRIES - {"summary.txt"}:
        return False
    ckpts = out / "checkpoints"
    return not ckpts.exists() or (
        ckpts.is_dir() and all(p.name.startswith(".") or p.name == "best.pt" for p in ckpts.iterdir())
    )


def check_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Refuse a run folder we may not use, touching nothing; True when its old contents must go."""
    if resume or not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    if out.is_dir() and never_checkpointed(out):
        return True
    if not overwrite:
        raise CnnlabError(f"run folder {out} already exists; use --resume to continue it or another --out")
    if not (out / "config.json").is_file():
        raise CnnlabError(
            f"--overwrite refuses to delete {out}: it holds no config.json, so it is not a cnnlab run folder"
        )
    return True


def prepare_dir(out: Path, resume: bool, overwrite: bool, lock: RunLock) -> None:
    """Lock and create the run folder (called once every setting has been checked, so a refused command
    leaves none behind and --overwrite deletes nothing for a run that cannot start)."""
    # Under the lock, look again: another process may have made or finished a run here since the first look.
    lock.acquire(out, create=False)
    replace = check_dir(out, resume, overwrite)
    try:
        if replace:
            # Renamed first, in one atomic step: a kill while deleting leaves the old folder whole or gone.
            trash = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            out.rename(trash)
            lock.release()  # its lock file went with the old folder; the new folder gets its own
            shutil.rmtree(trash, ignore_errors=True)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        lock.acquire(out, create=True)
        probe = out / "checkpoints" / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CnnlabError(
            f"cannot write to the run folder {out} ({exc.strerror}); choose another --out"
        ) from exc
    # Temporary files of a process killed mid-write: the files they were replacing are intact.
    for stale in [*out.glob(".*.tmp*"), *(out / "checkpoints").glob(".*.tmp*")]:
        stale.unlink(missing_ok=True)
    if resume:  # the run is no longer complete until it finishes again
        (out / "summary.txt").unlink(missing_ok=True)
