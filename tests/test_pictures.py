"""Figure 3 (first-layer kernels) and Figure 4 (nearest neighbours in feature space)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from _formats import write_idx
from PIL import Image
from torch import nn

from cnnlab import checkpoint, data, models
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.pictures import (
    MIN_WIDTH,
    PANEL_GAP,
    SEP,
    SEP_VALUE,
    filter_grid,
    find_neighbors,
    kernel_image,
    nearest,
)
from cnnlab.pictures.paper import neighbor_captions


def png_size(path: Path) -> tuple[int, int]:
    data_ = path.read_bytes()
    assert data_[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(data_)).size


# ---------------------------------------------------------------------------------------------------------
# Figure 3


def test_kernel_image_min_max_per_kernel() -> None:
    w = torch.randn(3, 5, 5) * 7 + 3
    img = kernel_image(w)
    assert img.shape == (5, 5, 3) and img.min() == 0.0 and img.max() == pytest.approx(1.0)
    # One normalisation for the three channels together, so colours keep their balance.
    np.testing.assert_allclose(img, ((w - w.min()) / (w.max() - w.min())).permute(1, 2, 0).numpy(), rtol=1e-6)
    grey = kernel_image(torch.randn(1, 4, 4))
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])


@pytest.mark.parametrize("scale", [1, 3])
def test_filter_grid_layout_two_panels(scale: int) -> None:
    towers = [torch.randn(7, 3, 4, 5), torch.randn(5, 3, 4, 5)]  # uneven on purpose: 7 and 5 kernels
    cols = 3
    grid = filter_grid(towers, cols=cols, scale=scale)
    ch, cw = 4 * scale, 5 * scale
    panel_w = SEP + cols * (cw + SEP)
    rows = 3  # ceil(7 / 3)
    assert grid.shape == (SEP + rows * (ch + SEP), 2 * panel_w + PANEL_GAP, 3)
    filled = np.zeros(grid.shape[:2], dtype=bool)
    for p, w in enumerate(towers):
        for i in range(w.shape[0]):
            y = SEP + (i // cols) * (ch + SEP)
            x = p * (panel_w + PANEL_GAP) + SEP + (i % cols) * (cw + SEP)
            want = kernel_image(w[i]).repeat(scale, 0).repeat(scale, 1)
            np.testing.assert_array_equal(grid[y : y + ch, x : x + cw], want)
            filled[y : y + ch, x : x + cw] = True
    assert (grid[~filled] == SEP_VALUE).all()  # separators, the gap between towers, empty cells


def test_filter_grid_from_conv_modules_grey() -> None:
    conv = nn.Conv2d(1, 4, 3)
    grid = filter_grid([conv])
    assert grid.shape == (SEP + 2 * 4, SEP + 2 * 4, 3)  # 4 kernels: 2x2 cells of 3 px and a separator
    np.testing.assert_array_equal(grid[SEP : SEP + 3, SEP : SEP + 3], kernel_image(conv.weight[0]))


def test_filters_command_untrained_and_towers(tmp_path: Path) -> None:
    one = tmp_path / "small.png"
    assert main(["filters", "alexnet_small", "--init", "--in-channels", "1", "-o", str(one)]) == 0
    assert png_size(one)[0] >= MIN_WIDTH
    model = models.create("alexnet_grouped", num_classes=10)
    convs = model.first_conv()
    assert len(convs) == 2  # one panel per tower, as the paper's two GPUs
    grid = filter_grid(convs)
    panel_w = (grid.shape[1] - PANEL_GAP) // 2
    assert (grid[:, panel_w : panel_w + PANEL_GAP] == SEP_VALUE).all()


def test_filters_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["filters", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "f.png")]) == 2
    assert main(["filters", "alexnet_small", "--init", "-o", str(tmp_path / "f.jpg")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and ".png" in err


# ---------------------------------------------------------------------------------------------------------
# Figure 4


def brute_force(q: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    dist = np.zeros((len(q), len(bank)))
    for i in range(len(q)):
        for j in range(len(bank)):
            dist[i, j] = np.sqrt(((q[i] - bank[j]) ** 2).sum())
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, idx, 1), idx


@pytest.mark.parametrize("chunk", [7, 1000])
def test_nearest_equals_brute_force(chunk: int) -> None:
    gen = torch.Generator().manual_seed(1)
    q, bank = torch.randn(6, 9, generator=gen), torch.randn(50, 9, generator=gen)
    dist, idx = nearest(q, bank, 5, chunk=chunk)
    want_d, want_i = brute_force(q.numpy(), bank.numpy(), 5)
    np.testing.assert_array_equal(idx.numpy(), want_i)
    np.testing.assert_allclose(dist.numpy(), want_d, rtol=1e-5, atol=1e-5)


def test_nearest_rejects_k_beyond_the_bank() -> None:
    with pytest.raises(CnnlabError, match="--k"):
        nearest(torch.zeros(2, 3), torch.zeros(4, 3), 5)


@pytest.fixture
def tiny_fashion(tmp_path: Path) -> tuple[Path, torch.Tensor, list[int]]:
    """40 random training images; the 6 test images are copies of training images 3, 9, 17, 20, 31, 38."""
    gen = np.random.default_rng(0)
    train = gen.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    sources = [3, 9, 17, 20, 31, 38]
    test = train[sources].copy()
    folder = tmp_path / "fmnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", train)
    write_idx(folder / "train-labels-idx1-ubyte", (np.arange(40) % 10).astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", test)
    write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(6) % 10).astype(np.uint8))
    return folder, torch.from_numpy(train), sources


def write_checkpoint(path: Path, folder: Path) -> None:
    train = data.load("fashion-mnist", "train", data_dir=folder)
    model = models.create("alexnet_small", num_classes=10, in_channels=1)
    ckpt = {
        "format": checkpoint.FORMAT,
        "format_version": checkpoint.FORMAT_VERSION,
        "model_name": "alexnet_small",
        "model_options": {},
        "num_classes": 10,
        "in_channels": 1,
        "classes": list(train.classes),
        "model": model.state_dict(),
        "augment": data.AugmentConfig.plain(28).to_dict(),
        "data_stats": data.compute_stats(train).to_dict(),
    }
    checkpoint.save(ckpt, path)


def test_neighbors_find_the_duplicated_training_images(tiny_fashion, tmp_path: Path) -> None:
    folder, _, sources = tiny_fashion
    ckpt_path = tmp_path / "last.pt"
    write_checkpoint(ckpt_path, folder)
    ckpt = checkpoint.load(ckpt_path)
    train, test = (data.load("fashion-mnist", s, data_dir=folder) for s in ("train", "test"))
    aug, stats = data.AugmentConfig.from_dict(ckpt["augment"]), data.DataStats.from_dict(ckpt["data_stats"])
    found = find_neighbors(
        checkpoint.build_model(ckpt), train, test, aug, stats, queries=4, k=3, batch_size=7
    )
    assert found.idx.shape == (4, 3) and found.dist.shape == (4, 3)
    assert found.idx[:, 0].tolist() == [sources[i] for i in found.query_idx.tolist()]  # itself, first
    assert torch.allclose(found.dist[:, 0], torch.zeros(4), atol=1e-3)
    assert (found.dist[:, 1:] >= found.dist[:, :1]).all()

    out = tmp_path / "nn.png"
    args = ["neighbors", str(ckpt_path), "--dataset", "fashion-mnist", "--data-dir", str(folder)]
    assert main([*args, "--queries", "4", "--k", "3", "--bank-size", "30", "-o", str(out)]) == 0
    width, height = png_size(out)
    assert width > 4 * 28 * 3 and height > 4 * 28 * 3  # four columns, four rows of 84-px images, labelled
    # Each row is captioned: the query's class, then each neighbour's class and distance, nearest first.
    captions = neighbor_captions(train, test, found)
    assert (
        captions[0][0]
        == f"query: test #{int(found.query_idx[0])}\n{train.classes[int(test.labels[found.query_idx[0]])]}"
    )
    assert captions[0][1].endswith(f"d = {float(found.dist[0, 0]):.3g}") and len(captions[0]) == 4


def test_filter_picture_draws_each_tower_pixel_for_pixel(tmp_path: Path) -> None:
    """The written Figure 3 holds each tower's grid unresampled below its title, with a dark rule between."""
    from cnnlab.pictures import paper

    model = models.create("alexnet_grouped", num_classes=10)
    out = paper.write_filters(model, tmp_path / "f.png")
    picture = np.asarray(Image.open(out).convert("RGB")).astype(int)
    convs = model.first_conv()
    scale = paper.filter_scale(convs)
    top = paper._MARGIN + paper._TITLE_H + paper._LABEL_H
    x = paper._MARGIN
    for conv in convs:
        panel = (filter_grid([conv], None, scale) * 255).round().astype(int)
        h, w = panel.shape[:2]
        assert np.abs(picture[top : top + h, x : x + w] - panel).max() <= 1
        x += w + paper._TOWER_GAP
    rule = paper._MARGIN + panel.shape[1] + paper._TOWER_GAP // 2
    assert picture[top + 5, rule - 1 : rule + 2].max(axis=1).min() < 100  # the dark rule between towers
    assert picture[: paper._MARGIN + paper._TITLE_H].min() < 100  # the title is written above


def test_curves_labels_do_not_overlap() -> None:
    """Each panel's y-label clears its own tick labels and the panel to its left (the log lr axis' labels
    used to run into the y-label), and the figure title clears the panel titles."""
    from cnnlab import report

    history = [
        dict(epoch=e, lr=0.01 / 10 ** (e // 3), train_loss=2.0 / e, val_loss=2.2 / e, train_top1_err=0.5 / e,
             val_top1_err=0.6 / e, val_top5_err=0.1 / e)
        for e in range(1, 10)
    ]  # fmt: skip
    fig = report.curves_figure(history, "a title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    for i, ax in enumerate(axes):
        label = ax.yaxis.label.get_window_extent(renderer)
        for tick in ax.get_yticklabels():
            if tick.get_text():
                assert not label.overlaps(tick.get_window_extent(renderer)), (i, tick.get_text())
        if i:
            assert label.x0 > axes[i - 1].get_window_extent(renderer).x1
        assert not fig._suptitle.get_window_extent(renderer).overlaps(ax.title.get_window_extent(renderer))
    report._pyplot().close(fig)
