"""Class probabilities for image files, preprocessed exactly as the checkpoint's run preprocessed its test
images (the run's own statistics and input size, stored in the checkpoint).

Inputs are files, folders (every image below them, sorted) or glob patterns (`'photos/**/*.jpg'`), read in
batches; `--csv` writes one row per image (path, then class and probability for each of the top k), and
never over an existing file unless `--force`.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab import checkpoint, data
from cnnlab.data.folder import IMAGE_EXTENSIONS, list_images
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import view_probs

Progress = Callable[[int, int], None]  # (images done, images in all)


MAX_MATCHES = 1_000_000  # paths one glob pattern may expand to


def _glob(pattern: str) -> list[str]:
    """The paths `pattern` matches (`*`, `?`, `[...]` within a name; `**` any number of folders), found
    iteratively: each real folder is visited once and a link back into the walked tree is never followed
    (two links to `.` would otherwise give 2^depth paths), hidden names only when the pattern spells the
    dot, and more than MAX_MATCHES matches is an error."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    base = str(Path(*parts[:fixed])) if fixed else "."
    rest = parts[fixed:]
    tree = os.path.realpath(base)
    found: list[str] = []
    seen: set[tuple[str, int]] = set()
    stack = [(base, 0)]
    while stack:
        folder, i = stack.pop()
        key = (os.path.realpath(folder), i)
        if key in seen:
            continue
        seen.add(key)
        if i == len(rest):
            found.append(folder if fixed or not folder.startswith("./") else folder[2:])
            if len(found) > MAX_MATCHES:
                raise CnnlabError(
                    f"{pattern!r} matches more than {MAX_MATCHES} paths; give a narrower pattern"
                )
            continue
        part = rest[i]
        if part == "**":
            stack.append((folder, i + 1))  # zero folders
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith(".") and not (part.startswith(".") and part != "**"):
                continue
            try:
                is_dir = e.is_dir()
                if is_dir and e.is_symlink() and _inside(os.path.realpath(e.path), tree):
                    is_dir = False  # a link back into the tree: a loop, never walked
            except OSError:
                continue
            if part == "**":
                if is_dir:
                    stack.append((e.path, i))
            elif fnmatch.fnmatchcase(e.name, part) and (is_dir or i + 1 == len(rest)):
                stack.append((e.path, i + 1))
    return sorted(set(found))


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long, say: then it is no folder, and preprocessing names the file
        return False


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def expand_inputs(items: Sequence[str]) -> list[str]:
    """Files as given, folders as every image file below them (walked iteratively; a link is followed
    only out of the folder), globs as their matching files (`_glob`); in order, each file once."""

    def is_image(p: Path) -> bool:
        return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")

    found: list[str] = []
    for item in items:
        path = Path(item)
        if _is_dir(path):
            files = [str(p) for p in list_images(path, [os.path.realpath(path)])]
            if not files:
                raise CnnlabError(
                    f"folder {item} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS)[:6])}, ...)"
                )
            found += files
        elif glob.has_magic(item) and not path.exists():
            files = [p for p in _glob(item) if is_image(Path(p))]
            if not files:
                raise CnnlabError(f"no image file matches {item!r}")
            found += files
        else:
            found.append(item)  # a missing file is reported by preprocessing, with its name
    return list(dict.fromkeys(found))


def predict(
    ckpt_path: str,
    images: Sequence[str],
    top: int = 5,
    device: str = "auto",
    batch_size: int = 64,
    progress: Progress | None = None,
    model: str | None = None,
    skip_bad_images: bool = False,
    skipped: list[str] | None = None,
) -> list[dict[str, Any]]:
    """For each image: {"path", "top": [{"class", "index", "prob"}, ...]} with the `top` most probable.

    A file that cannot be read stops the command (one line naming it), or with `skip_bad_images` is left
    out and its reason appended to `skipped`, the other files predicted as usual."""

    if top < 1:
        raise CnnlabError(f"--top must be at least 1, got {top}")
    if batch_size < 1:
        raise CnnlabError(f"--batch-size must be at least 1, got {batch_size}")
    ckpt = checkpoint.load(ckpt_path)
    dev = resolve_device(device)
    net = checkpoint.restore(ckpt, dev, model)
    classes = net.classes
    k = min(top, len(classes))
    out: list[dict[str, Any]] = []
    for i in range(0, len(images), batch_size):
        chunk = list(images[i : i + batch_size])
        try:
            x = data.preprocess_files(chunk, net.aug, net.stats).to(dev)
        except CnnlabError as exc:
            if not skip_bad_images:
                raise CnnlabError(f"{exc} (or pass --skip-bad-images to predict the others)") from None
            chunk, x = _good_files(chunk, net, dev, skipped if skipped is not None else [])
            if not chunk:
                continue
        probs = view_probs(net.model, x[None], net.amp)
        p, idx = probs.topk(k, dim=1)
        for path, pr, ix in zip(chunk, p.tolist(), idx.tolist(), strict=True):
            out.append(
                {
                    "path": path,
                    "top": [
                        {"class": classes[j], "index": j, "prob": q} for q, j in zip(pr, ix, strict=True)
                    ],
                }
            )
        if progress is not None:
            progress(len(out), len(images))
    return out


def _good_files(chunk: list[str], net: Any, dev: Any, skipped: list[str]) -> tuple[list[str], Any]:
    """The readable files of `chunk` and their batch, one file at a time; the others go to `skipped`."""

    good, rows = [], []
    for path in chunk:
        try:
            rows.append(data.preprocess_files([path], net.aug, net.stats))
            good.append(path)
        except CnnlabError as exc:
            skipped.append(str(exc))
    return good, (torch.cat(rows).to(dev) if rows else None)


def to_csv(results: list[dict[str, Any]]) -> str:
    """path, class_1, prob_1, ..., class_k, prob_k: one row per image."""
    k = max((len(r["top"]) for r in results), default=0)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", *(f"{col}_{i}" for i in range(1, k + 1) for col in ("class", "prob"))])
    for r in results:
        writer.writerow([r["path"], *(v for t in r["top"] for v in (t["class"], f"{t['prob']:.6f}"))])
    return buf.getvalue()
