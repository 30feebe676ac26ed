"""Writing a command's output files (diagram, filters, neighbors, compare, eval) so that nothing is lost.

Each file is written whole to a temporary file beside it and renamed over the target
(`checkpoint.write_bytes`): a full disk, a read-only folder or a parent that is a file is one line
(`cnnlab: error: could not write ...`), exit code 2, and no partial or temporary file is left.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab import checkpoint
from cnnlab.errors import CnnlabError


def check_target(path: str | os.PathLike[str], flag: str) -> Path:
    """Fail early, before minutes of work, when `path` cannot be a file: empty, an existing folder, or
    below something that is not a folder."""
    if not str(path).strip():
        raise CnnlabError(f"{flag} is empty; name the file to write")
    p = Path(path)
    if p.is_dir():
        raise CnnlabError(f"{p} is a folder; {flag} names the file to write")
    for parent in p.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise CnnlabError(f"cannot write {p}: {parent} is not a folder; choose another {flag}")
            break
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


def write_file(path: str | os.PathLike[str], data: bytes, flag: str) -> Path:
    """Write `data` to `path` atomically (its folder created if missing)."""
    p = check_target(path, flag)
    make_folder(p.parent, flag)
    checkpoint.write_bytes(p, data, hint=f"free some space or choose another {flag}")
    return p
