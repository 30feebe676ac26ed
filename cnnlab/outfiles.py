"""Every file cnnlab writes: the atomic writer, the names of its temporary files, and the one rule for
what a command may replace. Torch-free, so the run folder's code and every command can use it cheaply
(`checkpoint.py` builds on it, never the other way round).

The atomic writer: a file is written whole to a temporary file beside its target, flushed, fsynced and
renamed over the target with `os.replace` (atomic on POSIX), then the folder is fsynced. A full disk, a
read-only folder or a parent that is a file is one line (`cnnlab: error: could not write ...`), exit code
2, and no partial or temporary file is left.

Temporary files are named `.cnnlab-tmp-PID-RANDOM` (RANDOM: 16 hex digits), created with O_EXCL and
O_NOFOLLOW: a name no user file has by chance. Cleanup (`remove_temporaries`) deletes only regular files
whose whole name matches that pattern; `.env.tmpl`, `.notes.tmp.txt` or a folder `.cache.tmp` are never
touched.

The rule for every command that writes files (`check_output`, `Outputs`): an existing file is replaced
only with `--force`; a command's own input is never replaced, even with `--force` (compared by resolved
path and `os.path.samefile`); one command never writes two outputs to one name; only regular files are
replaced (a device node, a pipe or a socket is refused: `-o /dev/null --force` never replaces /dev/null);
and a command writing several files renames them into place together at the end, so a failure leaves
none of them (and no folder it created).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from cnnlab.errors import CnnlabError

TMP_PREFIX = ".cnnlab-tmp-"
_TMP_NAME = re.compile(r"\.cnnlab-tmp-[0-9]{1,10}-[0-9a-f]{16}")
RESUME_HINT = "free some space or choose another --out, then --resume"


# -- temporary files -----------------------------------------------------------------------------------------


def temp_name() -> str:
    """A temporary file's name only cnnlab makes: the prefix, this process's id and 64 random bits."""
    return f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"


def is_temporary(name: str) -> bool:
    return _TMP_NAME.fullmatch(name) is not None


def is_temporary_file(path: Path) -> bool:
    """A cnnlab temporary file: the exact name pattern, and a regular file (not a link, not a folder)."""
    if not is_temporary(path.name):
        return False
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_temporaries(folder: Path) -> None:
    """Delete the temporary files a killed write left in `folder` (only `is_temporary_file` ones)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if is_temporary_file(path):
                with contextlib.suppress(OSError):
                    path.unlink()


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _open_temp(folder: Path) -> tuple[Path, IO[bytes]]:
    """A new temporary file in `folder`: mode "x" (O_CREAT|O_EXCL) and O_NOFOLLOW, so an existing file or
    link of that name is never opened."""
    tmp = folder / temp_name()
    return tmp, open(tmp, "xb", opener=_no_follow)


# -- the atomic writer ---------------------------------------------------------------------------------------


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some file systems do not allow opening a folder, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def os_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`, if any: torch.save reports a write that failed part-way (a full disk)
    as a RuntimeError of its zip writer, with the OSError as its context."""
    seen: BaseException | None = exc
    for _ in range(16):  # a bounded walk: exception chains can loop
        if not isinstance(seen, Exception):
            return None
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _write_error(path: Path, exc: BaseException, hint: str) -> CnnlabError | None:
    cause = os_error(exc)
    if cause is None:
        return None
    reason = cause.strerror or str(cause)
    kept = "the previous file there is intact" if os.path.lexists(path) else "nothing was written"
    return CnnlabError(f"could not write {path}: {reason}; {kept} ({hint})")


def _check_replaceable(path: Path) -> None:
    """Only a regular file (or a link, which is replaced as a link) may be renamed over."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):
        raise CnnlabError(f"cannot write {path}: a folder of that name is in the way")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise CnnlabError(
            f"cannot write {path}: it is a device, pipe or socket, and cnnlab replaces only regular files"
        )


def _stage(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """`write(file)` into a new temporary file beside `path`, flushed and fsynced; its path."""
    tmp, f = _open_temp(path.parent)
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], hint: str = RESUME_HINT
) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`; an OSError
    becomes a CnnlabError ending in `hint` (what the user can do about it)."""
    path = Path(path)
    _check_replaceable(path)
    tmp: Path | None = None
    try:
        tmp = _stage(path, write)
        os.replace(tmp, path)
    except BaseException as exc:  # the temporary file goes whatever the failure, even Ctrl-C
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        error = _write_error(path, exc, hint)
        if error is None:
            raise
        raise error from exc
    fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes, hint: str = RESUME_HINT) -> None:
    """Atomic file write for the run folder's files (config.json, metrics.csv, plots) and every
    command's output files; `hint` ends the one-line error when the write fails."""
    atomic_write(path, lambda f: f.write(data), hint)


def write_text(path: str | os.PathLike[str], text: str, hint: str = RESUME_HINT) -> None:
    write_bytes(path, text.encode(), hint)


# -- what a command may write --------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_target(path: str | os.PathLike[str], flag: str) -> Path:
    """Fail early, before minutes of work, when `path` cannot be a file: empty, an existing folder, or
    below something that is not a folder."""
    if not str(path).strip():
        raise CnnlabError(f"{flag} is empty; name the file to write")
    p = Path(path)
    try:
        if p.is_dir():
            raise CnnlabError(f"{p} is a folder; {flag} names the file to write")
    except OSError as exc:  # a name too long, say
        raise CnnlabError(f"cannot write {p} ({exc.strerror}); choose another {flag}") from None
    for parent in p.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise CnnlabError(f"cannot write {p}: {parent} is not a folder; choose another {flag}")
            break
    return p


def check_output(
    path: str | os.PathLike[str],
    flag: str,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """The rule for one output file, checked before any work: a place a file can be written, not one of
    the command's `inputs` (even with `force`), not a device/pipe/socket, and not an existing file unless
    `force`."""
    p = check_target(path, flag)
    for given in inputs:
        if str(given).strip() and os.path.lexists(p) and _same_file(p, Path(given)):
            raise CnnlabError(
                f"{flag} {p} is one of this command's inputs ({given}); refusing to overwrite it "
                "(even with --force): choose another name"
            )
    if os.path.lexists(p):
        _check_replaceable(p)
        if not force:
            raise CnnlabError(f"{p} already exists; choose another {flag}, or pass --force to replace it")
    return p


def check_folder(folder: str | os.PathLike[str], flag: str) -> Path:
    """Fail early when `folder` cannot be a folder: empty, a file, or below a file."""
    if not str(folder).strip():
        raise CnnlabError(f"{flag} is empty; name a folder")
    f = Path(folder)
    for place in (f, *f.parents):
        if os.path.lexists(place):
            if not place.is_dir():
                raise CnnlabError(f"cannot use {f} as a folder: {place} is a file; choose another {flag}")
            break
    return f


def make_folder(folder: str | os.PathLike[str], flag: str) -> Path:
    """`folder` and its parents, created if missing; a failure is a CnnlabError naming `flag`."""
    f = Path(folder)
    if not str(folder).strip():
        raise CnnlabError(f"{flag} is empty; name a folder")
    try:
        f.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError):
            reason = "a file of that name (or above it) is in the way"
        raise CnnlabError(f"cannot create folder {f} ({reason}); choose another {flag}") from None
    return f


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for place in (folder, *folder.parents):
        if os.path.lexists(place):
            break
        missing.append(place)
    return missing


class Outputs:
    """The files one command writes, under the rule: each name checked (`check`; `claim` also refuses a
    name given to two outputs) before the work, then all written together (`write`): every file staged
    as a temporary file beside its target first, then renamed into place. A failure removes the staged
    files and the folders this command created, so a full disk leaves nothing half-written; what was
    there before is intact."""

    def __init__(self, flag: str, force: bool = False, inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.flag, self.force, self.inputs = flag, force, [str(i) for i in inputs]
        self.claimed: dict[Path, Path] = {}

    def check(self, path: str | os.PathLike[str]) -> Path:
        """`path` under the rule (`check_output`), before the work."""
        return check_output(path, self.flag, self.force, self.inputs)

    def claim(self, path: str | os.PathLike[str]) -> Path:
        """`check`, and refuse a name this command already gave another of its outputs."""
        p = self.check(path)
        key = Path(os.path.abspath(p))
        if key in self.claimed:
            raise CnnlabError(
                f"two outputs of this command would both be named {p}; rename one of the inputs or write "
                f"them into separate folders"
            )
        self.claimed[key] = p
        return p

    def write(self, files: dict[Path, bytes], hint: str | None = None) -> list[Path]:
        """Write `files`, all or none, each checked again under the rule."""
        hint = hint or f"free some space or choose another {self.flag}"
        for path in files:
            self.check(path)  # again: the work took time, and a file may have appeared
        created: list[Path] = []
        staged: list[tuple[Path, Path]] = []
        target = Path()
        try:
            for path, data in files.items():
                target = Path(path)
                missing = _missing_folders(target.parent)
                target.parent.mkdir(parents=True, exist_ok=True)
                created += missing
                staged.append((_stage(target, _writer(data)), target))
            for tmp, target in staged:
                os.replace(tmp, target)
        except BaseException as exc:
            for tmp, _ in staged:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            for folder in created:  # deepest first; only what is still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            error = _write_error(target, exc, hint)
            if error is None:
                raise
            raise error from exc
        for folder in {Path(p).parent for p in files}:
            fsync_dir(folder)
        return list(files)


def _writer(data: bytes) -> Callable[[IO[bytes]], Any]:
    return lambda f: f.write(data)


def write_file(
    path: str | os.PathLike[str],
    data: bytes,
    flag: str,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write one output file under the rule, atomically (its folder created if missing)."""
    return Outputs(flag, force, inputs).write({Path(path): data})[0]
