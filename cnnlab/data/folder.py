"""ImageNet-style folders: `PATH/train/<class>/*` and `PATH/val/<class>/*`, any format Pillow reads.

Files are checked once when the data set is opened (a fast pass: Pillow's structural verify, plus a full
decode only where verify proves little), so a broken file is reported before training starts, not hours
into it. Decoding proper happens in DataLoader workers (`BatchLoader(num_workers=...)`).

Symbolic links (to files or folders) are followed only when they lead outside the data set's own folders
(its root and splits, by real path). A link into the data set is a loop (`loop -> .` would have the walk
recurse without end), a second path to images already listed, or a way for test images to reach
training (`train/zz -> ..`): it is skipped, and a class folder that is such a link is refused. Each real
file counts once, under the first path that reaches it in sorted order. The walk is iterative: any depth.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from cnnlab.errors import CnnlabError

# Formats Pillow can open without outside programs (EPS needs Ghostscript, the rest are stubs).
_NO_READER = {"EPS", "PDF", "HDF5", "GRIB", "BUFR", "MPEG", "WMF"}
IMAGE_EXTENSIONS = frozenset(
    ext.lower()
    for ext, fmt in Image.registered_extensions().items()
    if fmt in Image.OPEN and fmt not in _NO_READER
)
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    """Any Pillow image as 8-bit RGB (channels=3) or L (channels=1).

    16-bit grey is scaled by 1/257 (65535 -> 255): Pillow's own convert would clip it at 255. Palette
    images with transparency go through RGBA so Pillow applies the palette's alpha entries; alpha is then
    dropped, as torchvision's decoders do.
    """
    if im.mode in _SIXTEEN_BIT:
        arr = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
    elif im.mode == "F":
        im = Image.fromarray(np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8), mode="L")
    elif im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    target = "RGB" if channels == 3 else "L"
    if im.mode == target:
        return im
    if target == "L" and im.mode not in ("L", "LA", "RGB", "RGBA", "1"):
        im = im.convert("RGB")  # CMYK, YCbCr, ...: via RGB, the conversion Pillow defines for them
    return im.convert(target)


def read_image(path: str | os.PathLike[str], channels: int = 3, side: int | None = None) -> torch.Tensor:
    """Decode one file to uint8 [channels, H, W]; with `side`, shorter side resized to `side`, then the
    centre `side` x `side` square (the paper's test geometry, section 2: rescale to 256, crop the centre).
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit and decodes anyway: here it is refused.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            f = Image.open(path)
        with f:
            check_pixels(f)
            if side is not None:
                check_resized(f.size, side)
            if side is not None and f.format == "JPEG":
                f.draft(None, (side, side))  # let libjpeg decode at 1/2, 1/4, 1/8 scale: much faster
            im = to_mode(ImageOps.exif_transpose(f), channels)
            if side is not None:
                from torchvision.transforms.v2 import functional as TF  # seconds to import: only when used

                im = TF.center_crop(TF.resize(im, [side], antialias=True), [side, side])
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, struct.error...) for bad files
        raise CnnlabError(f"{path}: cannot decode the image ({exc}); fix or delete the file") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def check_pixels(im: Image.Image) -> None:
    """Refuse an image over Pillow's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`, about 89 million
    pixels). Pillow itself only warns up to twice the limit and then decodes, up to ~0.5 GB per image in
    every loader worker; a file announcing that many pixels is treated as broken instead."""
    limit = Image.MAX_IMAGE_PIXELS
    w, h = im.size
    if limit is not None and w * h > limit:
        raise Image.DecompressionBombError(
            f"{w} x {h} = {w * h} pixels is over the decompression-bomb limit of {int(limit)} pixels"
        )


def check_resized(size: tuple[int, int], side: int) -> None:
    """Refuse an image whose shorter side scaled to `side` makes the other side absurd: a 1 x 80,000,000
    PNG (155 KB, under the pixel limit) would be resized to 256 x 20 billion pixels. Checked from the
    header, before anything is decoded."""
    w, h = size
    limit = Image.MAX_IMAGE_PIXELS or 2**31
    if min(w, h) < 1 or side * side * max(w, h) / min(w, h) > limit:
        raise Image.DecompressionBombError(
            f"{w} x {h} pixels resized to a shorter side of {side} would be over the limit of {int(limit)} "
            "pixels (an extreme aspect ratio)"
        )


def verify_image(path: str) -> str | None:
    """Why `path` is unreadable, or None. Fast for PNG (verify checks every chunk's CRC up to IEND) and
    for JPEG (verify + the end-of-image marker, decoding fully only when the marker is missing)."""
    # Called from threads: warnings are silenced by the caller, once, in the main thread
    # (catch_warnings in each thread would race on the process-wide filter list).
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as im:
            fmt = im.format
            check_pixels(im)
            im.verify()
        if fmt == "PNG":
            return None
        if fmt in ("JPEG", "MPO"):
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 64))
                if b"\xff\xd9" in f.read():
                    return None
        with Image.open(path) as im:  # other formats, or a JPEG without its end marker
            im.load()
    except Exception as exc:  # Pillow raises many types for broken files; each is a reason to report
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def _inside(path: str, folder: str) -> bool:
    """Whether real path `path` is `folder` or below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _links_inside(real: str, trees: Sequence[str]) -> bool:
    """Whether a link's target `real` lies in (or above) one of the data set's own folders."""
    return any(_inside(real, t) or _inside(t, real) for t in trees)


def list_images(folder: Path, trees: Sequence[str]) -> list[Path]:
    """Image files under `folder`, walked iteratively (any depth, no recursion limit). A link, to a file
    or a folder, is followed only when its target lies outside the data set's own folders `trees` (real
    paths): a link into the data set is a loop, a second path to images already listed, or a way for
    test images to reach training. A folder reached twice is walked once."""
    top = os.path.realpath(folder)
    seen = {top}
    found: list[Path] = []
    stack = [(str(folder), top)]  # (path, its real path: a plain subfolder's is its parent's plus its name)
    while stack:
        path, real_path = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:  # an unreadable folder lists nothing, as os.walk did
            continue
        folders = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                link = e.is_symlink()
                real = os.path.realpath(e.path) if link else os.path.join(real_path, e.name)
                if link and _links_inside(real, trees):
                    continue
                is_dir = e.is_dir()
            except OSError:  # a dangling link, a name too long...
                continue
            if is_dir:
                if real not in seen:
                    seen.add(real)
                    folders.append((e.path, real))
            elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(e.path))
        stack.extend(reversed(folders))
    return sorted(found)


def data_set_trees(root: Path) -> list[str]:
    """The real paths of a data set's own folders: its root and each split (a split may be a link)."""
    return [os.path.realpath(p) for p in (root, root / "train", root / "val", root / "test") if p.exists()]


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def split_folder(root: Path, split: str) -> Path:
    """`root/train`, or for the held-out split `root/val` (or `root/test`)."""
    if not root.is_dir():
        raise CnnlabError(
            f"image folder {root} does not exist; --dataset folder:PATH wants PATH/train/<class>/* "
            "and PATH/val/<class>/*"
        )
    names = ["train"] if split == "train" else ["val", "test"]
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise CnnlabError(
        f"{root} has no {' or '.join(n + '/' for n in names)} folder; expected {root}/train/<class>/* "
        f"and {root}/val/<class>/*"
    )


def _class_files(
    split_dir: Path, present: list[str], classes: list[str], trees: list[str]
) -> list[tuple[Path, int]]:
    """(image file, label) of every class folder in `present`, each real file once however many links
    reach it; a link into the data set itself, an empty folder or one of links only is refused."""
    files: list[tuple[Path, int]] = []
    real_files: set[str] = set()  # each real file once, however many links reach it
    for name in present:
        if (split_dir / name).is_symlink() and _links_inside(os.path.realpath(split_dir / name), trees):
            raise CnnlabError(
                f"class folder {split_dir / name} is a link into the data set itself "
                f"({os.path.realpath(split_dir / name)}); cnnlab follows links only to folders outside "
                "it, so that no image of one split is read as part of another: replace the link"
            )
        images = list_images(split_dir / name, trees)
        if not images:
            raise CnnlabError(
                f"class folder {split_dir / name} has no images (readable extensions: .jpg, .png, "
                "...); add images or remove the folder"
            )
        label = classes.index(name)
        before = len(files)
        for p in images:
            real = os.path.realpath(p)
            if real not in real_files:
                real_files.add(real)
                files.append((p, label))
        if len(files) == before:
            raise CnnlabError(
                f"class folder {split_dir / name} holds only links to images already listed under "
                "another class; give it images of its own or remove it"
            )
    return files


def _verify_all(files: list[tuple[Path, int]]) -> list[str | None]:
    """Why each file cannot be read as an image (None: it can), checked in threads."""
    with (
        warnings.catch_warnings(),
        ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool,
    ):
        warnings.simplefilter("ignore")
        return list(pool.map(verify_image, [str(p) for p, _ in files], chunksize=64))


class FolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Image files with labels from their class folder; items are uint8 [3, H, W] at the file's size."""

    channels = 3

    def __init__(self, root: str | os.PathLike[str], split: str, skip_bad_images: bool = False) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.name = f"folder:{root}"
        self.source = str(self.root)
        split_dir = split_folder(self.root, split)
        present = _class_dirs(split_dir)
        if not present:
            loose = list_images(split_dir, data_set_trees(self.root))
            hint = f" ({len(loose)} images lie directly inside: move them into a subfolder per class)"
            raise CnnlabError(
                f"{split_dir} has no class folders{hint if loose else ''}; expected {split_dir}/<class>/*"
            )
        # Class indices always come from train/, so a val/ lacking a class still labels the rest right.
        train_dir = self.root / "train"
        self.classes = _class_dirs(train_dir) if split != "train" and train_dir.is_dir() else present
        unknown = sorted(set(present) - set(self.classes))
        if unknown:
            raise CnnlabError(
                f"{split_dir} has class folders that {train_dir} lacks: {', '.join(unknown[:5])}; "
                "the two splits must use the same class names"
            )
        files = _class_files(split_dir, present, self.classes, data_set_trees(self.root))
        self.skipped: list[str] = []
        self.skip_reasons: dict[str, str] = {}
        reasons = _verify_all(files)
        bad = [(str(p), r) for (p, _), r in zip(files, reasons, strict=True) if r is not None]
        if bad and not skip_bad_images:
            path, reason = bad[0]
            more = f" ({len(bad)} unreadable files in all)" if len(bad) > 1 else ""
            raise CnnlabError(
                f"{path}: unreadable image ({reason}){more}; fix or delete it, or pass --skip-bad-images"
            )
        self.skipped = [p for p, _ in bad]
        self.skip_reasons = dict(bad)
        self.samples = [(str(p), y) for (p, y), r in zip(files, reasons, strict=True) if r is None]
        left = {y for _, y in self.samples}
        for name in present:
            if self.classes.index(name) not in left:
                raise CnnlabError(f"class folder {split_dir / name}: every image in it is unreadable")
        self.labels = torch.tensor([y for _, y in self.samples], dtype=torch.int64)
        self._digest: str | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return read_image(path, self.channels), label

    def read(self, index: int, side: int | None) -> torch.Tensor:
        """The image at the loader's base geometry (shorter side `side`, centre square)."""
        return read_image(self.samples[index][0], self.channels, side)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: torch.Tensor | list[int]) -> FolderDataset:
        """The same data set restricted to some files (no second verify pass); classes are kept."""
        idx = torch.as_tensor(indices, dtype=torch.int64).tolist()
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in idx]
        part.labels = self.labels[idx] if idx else self.labels[:0]
        part._digest = None
        return part

    def identity(self) -> dict[str, Any]:
        """Name, split, count and a hash of (relative path, size, label) for each file: cheap to compute
        for a million files, and it changes when a file is added, removed, relabelled or rewritten."""
        if self._digest is None:
            h = hashlib.sha256()
            for path, label in self.samples:
                h.update(f"{os.path.relpath(path, self.root)}\0{os.path.getsize(path)}\0{label}\n".encode())
            self._digest = h.hexdigest()
        return {
            "name": self.name,
            "split": self.split,
            "count": len(self),
            "classes": len(self.classes),
            "skipped": len(self.skipped),
            "sha256": self._digest,
        }

    def __repr__(self) -> str:
        n, k = len(self), len(self.classes)
        return f"FolderDataset({str(self.root)!r}, {self.split!r}, {n} images, {k} classes)"
