"""The run folder: who may write it (`RunLock`), how cnnlab knows it made it (`MARKER`), and when it may be
created, reused or cleared.

cnnlab deletes or replaces only what it can prove it wrote. A new run folder gets a marker file first,
`RUN/.cnnlab-run.json`, holding the run's identity; a folder without it is the user's, and no flag makes
cnnlab delete anything in it. Even in a marked folder, only the entries cnnlab writes (`_OWN_TOP`,
`_OWN_CHECKPOINTS`, TensorBoard event files) are ever removed, and a folder holding anything else is refused
whole: the user's files sit beside a run only if the user put them there.

A run folder is written by one `cnnlab train` at a time. `check_dir` refuses a folder that may not be used,
touching nothing; `prepare_dir` then, under the folder's lock, looks again and creates (or clears) it. The
folder is judged before its lock is taken: only a marked folder (or one cnnlab is creating) is ever
locked, and the lock file is created with O_EXCL and opened with O_NOFOLLOW, so a user's own `.lock`, or
a link named `.lock`, is never followed, truncated or written. cnnlab never touches anything outside the
folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnnlab import outfiles
from cnnlab.errors import CnnlabError

if sys.platform != "win32":
    import fcntl

LOCK_NAME = ".lock"
MARKER = ".cnnlab-run.json"
MARKER_FORMAT = "cnnlab-run"

# What `cnnlab train` itself writes in a run folder; temporary files are `outfiles.is_temporary_file` ones.
_OWN_TOP = frozenset(
    {
        MARKER,
        LOCK_NAME,
        "config.json",
        "metrics.csv",
        "curves.png",
        "summary.txt",
        "report.html",
        "failed.txt",  # the claims' record of a run whose loss diverged (experiments/runner.py)
        "checkpoints",
        "tensorboard",
    }
)
_OWN_CHECKPOINTS = frozenset({"last.pt", "best.pt"})
_TENSORBOARD_PREFIX = "events.out.tfevents."


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run's folder, named once."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def summary(self) -> Path:
        return self.root / "summary.txt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"


class RunLock:
    """An exclusive `flock` on RUN/.lock, held by rank 0 for the whole run, so that a second `cnnlab train`
    on the same folder is refused before it changes anything. The kernel drops the lock when its process
    ends, even by SIGKILL, so a killed run resumes without any cleanup. The file holds the holder's pid,
    for the message."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.folder: Path | None = None

    def acquire(self, folder: Path, create: bool) -> None:
        """Lock `folder` (no-op when held). Without `create`, only a marked folder's existing lock file;
        with it (a folder that `check_dir` accepted), the lock file is created when missing."""
        if self.fd is not None and self.folder == folder:
            return
        self.release()
        if sys.platform == "win32":  # pragma: no cover - no flock; Windows runs go unlocked
            return
        if not create and read_marker(folder) is None:
            return  # not a run folder (yet): nothing of ours to lock, and nothing of the user's is touched
        fd = _open_lock(folder / LOCK_NAME, create)
        if fd is None:
            return  # no lock file: nothing holds it
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


_LOCK_CONTENT = re.compile(rb"[0-9]{0,10}\n?")


def _open_lock(path: Path, create: bool) -> int | None:
    """The lock file's descriptor, or None when there is none and `create` is false. A new one is created
    with O_EXCL; an existing one is opened with O_NOFOLLOW and must be a regular file holding nothing but
    a pid (what cnnlab writes there), so a link or a user's file of that name is refused, never written."""
    base = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
    if create:
        try:
            return os.open(path, base | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        except OSError as exc:
            raise CnnlabError(f"cannot create {path} ({exc.strerror}); choose another --out") from None
    try:
        fd = os.open(path, base)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a link; EACCES; ...
        why = "it is a link, and cnnlab never follows one" if os.path.islink(path) else exc.strerror
        raise CnnlabError(
            f"{path} is not cnnlab's lock file ({why}); move it away or choose another --out"
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > 32 or not _LOCK_CONTENT.fullmatch(os.pread(fd, 64, 0)):
        os.close(fd)
        raise CnnlabError(
            f"{path} is not cnnlab's lock file (it holds something else); move it away or choose "
            "another --out"
        )
    return fd


# -- the marker ----------------------------------------------------------------------------------------------


def read_marker(out: Path) -> dict[str, object] | None:
    """The folder's marker, or None when it has none (or an unreadable one: then it is not provably ours)."""
    try:
        doc = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MARKER_FORMAT:
        return None
    if not isinstance(doc.get("run_id"), str):
        return None
    return doc


def write_marker(out: Path, checkpointed: bool, new_run: bool = False) -> None:
    """Write the marker atomically, keeping the run's identity unless `new_run`. `checkpointed` turns true
    once the run's first last.pt exists: from then on the folder holds a run to resume, and a restart may
    not clear it."""
    old = None if new_run else read_marker(out)
    doc = {
        "format": MARKER_FORMAT,
        "run_id": old["run_id"] if old else uuid.uuid4().hex,
        "created": old.get("created") if old else time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "checkpointed": checkpointed,
        "note": "written by cnnlab train, which deletes or replaces only the files it wrote in this folder",
    }
    outfiles.write_text(out / MARKER, json.dumps(doc, indent=2) + "\n")


def mark_checkpointed(out: Path) -> None:
    marker = read_marker(out)
    if marker is None or marker.get("checkpointed") is not True:
        write_marker(out, checkpointed=True)


# -- what is ours --------------------------------------------------------------------------------------------


def foreign_entries(out: Path) -> list[str]:
    """Entries of `out` that cnnlab's runs never write (relative paths, sorted): the user's files."""
    foreign: list[str] = []
    for entry in sorted(out.iterdir()):
        name = entry.name
        if outfiles.is_temporary_file(entry):
            continue
        if name not in _OWN_TOP:
            foreign.append(name)
        elif name == "checkpoints":
            foreign += _foreign_in(entry, lambda n: n in _OWN_CHECKPOINTS)
        elif name == "tensorboard":
            foreign += _foreign_in(entry, lambda n: n.startswith(_TENSORBOARD_PREFIX))
        elif not _is_plain_file(entry):
            foreign.append(name)  # our files are plain files; a folder, link or pipe of that name is not ours
    return foreign


def _foreign_in(folder: Path, ours: Callable[[str], bool]) -> list[str]:
    """Inside one of our subfolders: anything but our own plain files (a link or a subfolder is not)."""
    if folder.is_symlink() or not folder.is_dir():
        return [folder.name]
    return [
        f"{folder.name}/{p.name}"
        for p in sorted(folder.iterdir())
        if not outfiles.is_temporary_file(p) and not (ours(p.name) and _is_plain_file(p))
    ]


def _is_plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove_own_files(out: Path) -> None:
    """Delete what a run wrote, keeping the folder itself (a symlink stays a link), its lock and marker.
    The order keeps every intermediate state safe: summary.txt first (the run is no longer complete), then
    last.pt (no longer resumable), then the rest; a kill at any point leaves a marked folder that a
    restart clears again."""
    for rel in ("summary.txt", "checkpoints/last.pt", "checkpoints/best.pt"):
        (out / rel).unlink(missing_ok=True)
    for entry in out.iterdir():
        if entry.name in (LOCK_NAME, MARKER):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


# -- may this folder be used? --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderPlan:
    """What starting a run in a folder will do to it."""

    clear: bool  # delete the run files already there (a restart, or --overwrite)


def never_checkpointed(out: Path) -> bool:
    """A marked folder whose run never saved its first last.pt (a start that was killed or failed): starting
    the same run again there loses nothing. A run that did checkpoint stays protected even after its last.pt
    is deleted: the marker remembers."""
    marker = read_marker(out)
    if marker is None or marker.get("checkpointed") is not False:
        return False
    return not RunFolder(out).last.exists()


def check_dir(out: Path, resume: bool, overwrite: bool) -> FolderPlan:
    """Refuse a run folder we may not use, touching nothing; say whether its old run files must go."""
    if out.exists() and not out.is_dir():
        raise CnnlabError(f"--out {out} is a file, not a folder; choose another --out")
    if resume:
        if out.is_dir() and read_marker(out) is None:
            raise CnnlabError(
                f"--resume: {out} was not made by cnnlab train (it has no {MARKER}); cnnlab resumes and "
                "writes only run folders it made: choose another --out"
            )
        return FolderPlan(clear=False)
    if not out.exists() or not any(out.iterdir()):
        return FolderPlan(clear=False)
    if read_marker(out) is None:
        raise CnnlabError(
            f"run folder {out} already exists and was not made by cnnlab train (it has no {MARKER}); "
            "cnnlab never deletes what it did not write: choose another --out"
        )
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise CnnlabError(
            f"run folder {out} holds files cnnlab did not write ({shown}); cnnlab never deletes them: "
            "move them away or choose another --out"
        )
    if never_checkpointed(out):
        return FolderPlan(clear=True)
    if not overwrite:
        raise CnnlabError(
            f"run folder {out} already exists; use --resume to continue it, --overwrite to replace it, "
            "or another --out"
        )
    return FolderPlan(clear=True)


def prepare_dir(out: Path, resume: bool, overwrite: bool, lock: RunLock) -> None:
    """Lock and create the run folder (called once every setting has been checked, so a refused command
    leaves none behind and --overwrite deletes nothing for a run that cannot start)."""
    # Judge the folder first (a folder that is not ours is refused before any lock file is opened), then,
    # under the lock, look again: another process may have made or finished a run here since the first look.
    check_dir(out, resume, overwrite)
    lock.acquire(out, create=False)
    plan = check_dir(out, resume, overwrite)
    try:
        was_empty = not out.exists() or not any(out.iterdir())
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire(out, create=True)
        if was_empty and not resume:
            # A new folder: the marker before anything else, so that whatever follows is provably ours.
            others = [p.name for p in out.iterdir() if p.name != LOCK_NAME]
            if others:  # someone else wrote here between our look and our lock
                raise CnnlabError(f"run folder {out} changed while starting ({', '.join(others)}); try again")
            write_marker(out, checkpointed=False, new_run=True)
        elif plan.clear:
            _remove_own_files(out)
            write_marker(out, checkpointed=False, new_run=True)
        RunFolder(out).checkpoints.mkdir(exist_ok=True)
        probe = RunFolder(out).checkpoints / outfiles.temp_name()  # can we write here?
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise CnnlabError(
            f"cannot write to the run folder {out} ({exc.strerror}); choose another --out"
        ) from exc
    # Temporary files of a process killed mid-write (the files they were replacing are intact): only
    # regular files named exactly as cnnlab names them, in the two folders a run writes.
    outfiles.remove_temporaries(out)
    outfiles.remove_temporaries(RunFolder(out).checkpoints)
    if resume:  # the run is no longer complete until it finishes again
        (out / "summary.txt").unlink(missing_ok=True)
