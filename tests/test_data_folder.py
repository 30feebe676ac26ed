"""ImageNet-style folders: image modes, class order, decoding in workers, and preprocess_files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import data
from cnnlab.data.folder import read_image, to_mode


def _rgb(seed: int, size: tuple[int, int] = (20, 16)) -> np.ndarray:
    """A smooth colour image (JPEG keeps it close), different per seed."""
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    planes = [xx * 255 / size[0], yy * 255 / size[1], np.full_like(xx, 40 * seed % 256)]
    return np.stack(planes, -1).astype(np.uint8)


def write_tree(root: Path) -> dict[str, Path]:
    """Two classes in train/ and val/, images in the modes users have: L, P, RGBA, CMYK, I;16, RGB."""
    files: dict[str, Path] = {}
    for split in ("train", "val"):
        d = root / split
        for cls in ("ant", "bee"):
            (d / cls).mkdir(parents=True)
        arr = _rgb(1)
        Image.fromarray(arr).save(d / "ant" / "rgb.jpg", quality=95)
        Image.fromarray(arr[:, :, 0]).save(d / "ant" / "grey.png")
        pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        pal.info["transparency"] = 0
        pal.save(d / "ant" / "palette.png", transparency=0)
        rgba = np.dstack([arr, np.full(arr.shape[:2], 128, np.uint8)])
        Image.fromarray(rgba, "RGBA").save(d / "bee" / "alpha.png")
        Image.fromarray(arr).convert("CMYK").save(d / "bee" / "cmyk.jpg", quality=95)
        sixteen = (arr[:, :, 1].astype(np.uint16) * 257).astype(np.uint16)
        Image.fromarray(sixteen).save(d / "bee" / "deep.png")  # 16-bit greyscale PNG
        (d / "bee" / "README.txt").write_text("not an image: ignored")
        files.update({f"{split}/{p.stem}": p for p in d.rglob("*.*") if p.suffix != ".txt"})
    return files


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("imgs")
    return root, write_tree(root)


def test_modes_become_rgb(tree: tuple[Path, dict[str, Path]]) -> None:
    _root, files = tree
    arr = torch.from_numpy(_rgb(1)).permute(2, 0, 1)
    with Image.open(files["train/deep"]) as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    for key, path in files.items():
        img = read_image(path)
        assert img.dtype == torch.uint8 and img.shape == (3, 16, 20), key
    # 16-bit grey is scaled 65535 -> 255, so the green channel comes back exactly.
    assert torch.equal(read_image(files["train/deep"])[0], arr[1])
    assert torch.equal(read_image(files["train/grey"])[1], arr[0])
    assert torch.equal(read_image(files["train/alpha"]), arr)  # alpha dropped, colours kept
    # CMYK and JPEG: lossy, but close to the original colours.
    assert (read_image(files["train/cmyk"]).float() - arr.float()).abs().mean() < 6
    assert (read_image(files["train/rgb"]).float() - arr.float()).abs().mean() < 6
    with Image.open(files["train/palette"]) as im:
        want = np.array(im.convert("RGBA").convert("RGB"))
    assert torch.equal(read_image(files["train/palette"]), torch.from_numpy(want).permute(2, 0, 1))
    # One channel on request (MNIST-like models), from any mode.
    assert read_image(files["train/cmyk"], channels=1).shape == (1, 16, 20)
    assert to_mode(Image.new("I;16", (2, 2), 65535), 1).getpixel((0, 0)) == 255


def test_folder_dataset(tree: tuple[Path, dict[str, Path]]) -> None:
    root, _ = tree
    train = data.load(f"folder:{root}", "train")
    val = data.load(f"folder:{root}", "val")
    assert isinstance(train, data.FolderDataset) and isinstance(val, data.FolderDataset)
    assert train.classes == ["ant", "bee"] == val.classes
    assert len(train) == 6 and train.skipped == []
    assert sorted(Path(p).name for p, y in train.samples if y == 1) == ["alpha.png", "cmyk.jpg", "deep.png"]
    assert train.labels.tolist() == [y for _, y in train.samples]
    x, y = train[0]
    assert x.dtype == torch.uint8 and x.shape[0] == 3 and y == 0
    assert train.identity()["count"] == 6 and train.identity()["sha256"] != val.identity()["sha256"]
    part = train.subset([4, 1])
    assert part.samples == [train.samples[4], train.samples[1]] and part.labels.tolist() == [1, 0]
    assert part.classes == train.classes and len(train) == 6
    assert part.identity()["count"] == 2 and part.identity()["sha256"] != train.identity()["sha256"]


def test_val_uses_train_class_indices(tmp_path: Path) -> None:
    for cls in ("a", "b", "c"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "train" / cls / "x.png")
    (tmp_path / "val" / "c").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "val" / "c" / "x.png")
    val = data.load(f"folder:{tmp_path}", "val")
    assert val.classes == ["a", "b", "c"] and val.labels.tolist() == [2]


def test_geometry_resize_shorter_side_then_centre(tmp_path: Path) -> None:
    arr = np.zeros((30, 60, 3), np.uint8)
    arr[:, 15:45] = 255  # a white band in the middle third: after the centre crop, the middle half
    Image.fromarray(arr).save(tmp_path / "wide.png")
    img = read_image(tmp_path / "wide.png", side=10)
    assert img.shape == (3, 10, 10)
    assert int(img[0, 5, 5]) == 255 and int(img[0, 5, 0]) < 255


def test_folder_loader_matches_in_memory(tree: tuple[Path, dict[str, Path]]) -> None:
    """A folder, decoded by workers, gives the same batches as the same images held in memory."""
    root, _ = tree
    ds = data.load(f"folder:{root}", "train")
    assert isinstance(ds, data.FolderDataset)
    side = 12
    stats = data.compute_stats(ds, side=side)
    assert stats.count == 6 and stats.mean_image.shape == (3, side, side)
    mem = data.ArrayDataset(
        "mem", "train", torch.stack([ds.read(i, side) for i in range(len(ds))]), ds.labels, ds.classes
    )
    mem_stats = data.compute_stats(mem)
    assert torch.allclose(mem_stats.mean, stats.mean) and torch.allclose(mem_stats.eigvals, stats.eigvals)
    aug = data.AugmentConfig(10, pad=1, pca_std=0.1)
    kw = dict(aug=aug, stats=stats, seed=3, device="cpu")
    folder_batches = list(data.BatchLoader(ds, 4, train=True, num_workers=2, **kw).epoch(1))
    mem_batches = list(data.BatchLoader(mem, 4, train=True, **kw).epoch(1))
    assert len(folder_batches) == len(mem_batches) == 1
    for (xf, yf), (xm, ym) in zip(folder_batches, mem_batches, strict=True):
        assert xf.shape == (4, 3, 10, 10)
        assert torch.equal(yf, ym) and torch.allclose(xf, xm, atol=1e-5)
    ((ev, ey),) = list(data.BatchLoader(ds, 8, train=False, views="tencrop", num_workers=0, **kw).epoch(0))
    assert ev.shape == (10, 6, 3, 10, 10) and ey.tolist() == ds.labels.tolist()


def test_preprocess_files_match_evaluation(tmp_path: Path) -> None:
    """predict's preprocessing gives exactly the centre view the evaluation loader gives."""
    rng = np.random.default_rng(5)
    images = torch.from_numpy(rng.integers(0, 256, (3, 1, 12, 12), dtype=np.uint8))
    ds = data.ArrayDataset("g", "train", images, torch.tensor([0, 1, 0]), ["a", "b"])
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i, 0].numpy()).convert("RGB").save(paths[-1])  # users' files are RGB
    stats = data.compute_stats(ds)
    for aug in (
        data.AugmentConfig(10, normalize="pixel"),
        data.AugmentConfig(32),
        data.AugmentConfig(8, resize=16),
    ):
        x = data.preprocess_files(paths, aug, stats)
        ((want, _),) = list(data.BatchLoader(ds, 3, train=False, aug=aug, stats=stats, seed=0, device="cpu"))
        assert x.shape == (3, 1, aug.input_size, aug.input_size)
        assert torch.allclose(x, want[0], atol=1e-5)
