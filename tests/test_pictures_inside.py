"""The pictures of a trained net's insides are computed for real: a net trained to tell a bright square from
noise must lose its belief when the square is occluded, and Grad-CAM must find the square."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _formats import write_idx
from PIL import Image

from cnnlab import checkpoint, data, models
from cnnlab.cli import main
from cnnlab.models.alexnet_parallel import grouped_to_parallel_state
from cnnlab.pictures import common
from cnnlab.pictures.activations import layer_maps
from cnnlab.pictures.gradcam import gradcam
from cnnlab.pictures.layers import catch, feature_stages, joined
from cnnlab.pictures.mistakes import confident_mistakes
from cnnlab.pictures.occlusion import occlusion, positions

SIDE, SQUARE = 28, 7
SQUARE_CLASS, BLANK_CLASS = 0, 1  # fashion-mnist's names are kept: the data set is stored as its IDX files


def square_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dim noise; every other image has a bright 7x7 square somewhere. (images, labels, square corners)."""
    gen = np.random.default_rng(seed)
    images = gen.integers(0, 70, (n, SIDE, SIDE), dtype=np.uint8)
    labels = np.where(np.arange(n) % 2 == 0, SQUARE_CLASS, BLANK_CLASS).astype(np.uint8)
    corners = gen.integers(1, SIDE - SQUARE - 1, (n, 2))
    for i in np.flatnonzero(labels == SQUARE_CLASS):
        t, l = corners[i]
        images[i, t : t + SQUARE, l : l + SQUARE] = 255
    return images, labels, corners


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A quarter-width alexnet_small trained for a second on squares vs noise, saved as a checkpoint
    next to its data set (test split: 40 images, the first 3 square images labelled blank on purpose)."""
    root = tmp_path_factory.mktemp("squares")
    train_x, train_y, _ = square_images(384, seed=1)
    test_x, test_y, test_corners = square_images(40, seed=2)
    wrong = [0, 2, 4]  # square images, labelled "blank": the mistakes the net should be surest of
    test_y = test_y.copy()
    test_y[wrong] = BLANK_CLASS
    folder = root / "data"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", train_x)
    write_idx(folder / "train-labels-idx1-ubyte", train_y)
    write_idx(folder / "t10k-images-idx3-ubyte", test_x)
    write_idx(folder / "t10k-labels-idx1-ubyte", test_y)
    train = data.load("fashion-mnist", "train", data_dir=folder)
    aug, stats = data.AugmentConfig.plain(SIDE), data.compute_stats(train)
    x = data.Augmenter(aug, stats, (SIDE, SIDE), "cpu").eval(train.images)[0]
    y = train.labels
    torch.manual_seed(0)
    model = models.create("alexnet_small", num_classes=10, in_channels=1, width=0.25, dropout=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(6):
        for idx in torch.randperm(len(y)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    ckpt = {
        "format": checkpoint.FORMAT,
        "format_version": checkpoint.FORMAT_VERSION,
        "model_name": "alexnet_small",
        "model_options": {"width": 0.25, "dropout": 0.0},
        "num_classes": 10,
        "in_channels": 1,
        "classes": list(train.classes),
        "model": model.state_dict(),
        "augment": aug.to_dict(),
        "data_stats": stats.to_dict(),
    }
    path = root / "best.pt"
    checkpoint.save(ckpt, path)
    subject = common.load_subject(path, "cpu")
    test = data.load("fashion-mnist", "test", data_dir=folder)
    tx, _ = subject.from_uint8(test.images)
    with torch.no_grad():
        accuracy = float((subject.model(tx).argmax(1) == torch.from_numpy(test_y).long()).float().mean())
    return dict(root=root, folder=folder, path=path, subject=subject, x=tx, images=test_x,
                labels=test_y, corners=test_corners, wrong=wrong, accuracy=accuracy)  # fmt: skip


def square_indices(t: dict[str, Any]) -> list[int]:
    return list(range(0, 40, 2))  # every even test image has the square (some labelled blank)


def test_the_net_learned_the_square(trained: dict[str, Any]) -> None:
    # 37 of the 40 labels are right; the 3 wrong ones are the planted mistakes.
    assert trained["accuracy"] >= 0.85


def test_occluding_the_square_lowers_its_probability_more_than_occluding_background(trained) -> None:
    model, x = trained["subject"].model, trained["x"]
    patch = SQUARE + 4
    for i in square_indices(trained)[:8]:
        found = occlusion(model, x[i : i + 1], SQUARE_CLASS, patch=patch, stride=2)
        t, l = trained["corners"][i]
        assert found.base_prob > 0.8
        hides, misses = [], []  # positions hiding the whole square, positions not touching it
        for a, top in enumerate(found.tops):
            for b, left in enumerate(found.lefts):
                p = float(found.grid[a, b])
                if top <= t and t + SQUARE <= top + patch and left <= l and l + SQUARE <= left + patch:
                    hides.append(p)
                elif top + patch <= t or t + SQUARE <= top or left + patch <= l or l + SQUARE <= left:
                    misses.append(p)
        assert hides and misses
        assert max(hides) < 0.5 < min(misses), (i, max(hides), min(misses))
        # Per pixel too: over the square the map is lower than far from it.
        far = torch.ones(SIDE, SIDE, dtype=torch.bool)
        far[max(0, t - patch) : t + SQUARE + patch, max(0, l - patch) : l + SQUARE + patch] = False
        if far.any():
            assert found.pixel[t : t + SQUARE, l : l + SQUARE].mean() < found.pixel[far].mean() - 0.1
        top, left, _ = found.lowest()
        assert (
            top <= t + 1
            and t + SQUARE <= top + patch + 1
            and left <= l + 1
            and l + SQUARE <= left + patch + 1
        )


def test_occlusion_positions_cover_every_pixel() -> None:
    assert positions(28, 8, 4) == [0, 4, 8, 12, 16, 20]
    assert positions(28, 8, 6) == [0, 6, 12, 18, 20]  # flush with the far edge
    assert positions(8, 8, 3) == [0]


def test_gradcam_peaks_on_the_square(trained: dict[str, Any]) -> None:
    model, x = trained["subject"].model, trained["x"]
    idx = square_indices(trained)[:10]
    cam = gradcam(model, x[idx])  # the predicted class: the square's
    assert cam.layer == "conv3" and cam.maps.shape == (10, 7, 7)
    assert cam.targets == [SQUARE_CLASS] * 10
    heat = cam.heat(SIDE)
    for k, i in enumerate(idx):
        t, l = trained["corners"][i]
        r, c = divmod(int(heat[k].argmax()), SIDE)
        assert t - 3 <= r < t + SQUARE + 3 and l - 3 <= c < l + SQUARE + 3, (i, r, c, t, l)
        inside = heat[k, t : t + SQUARE, l : l + SQUARE].mean()
        assert inside > 2 * heat[k].mean()


def test_gradcam_weights_are_the_mean_gradient(trained: dict[str, Any]) -> None:
    """Eq. 1 and 2 by hand for one image at conv2: alpha_k = mean dy/dA_k, map = ReLU(sum alpha_k A_k)."""
    model, x = trained["subject"].model, trained["x"][:1]
    stage = feature_stages(model)[1]
    cam = gradcam(model, x, stage, target=BLANK_CLASS)
    with torch.enable_grad(), catch([stage], detach=False) as caught:
        score = model(x)[0, BLANK_CLASS]
        a = joined(caught[stage.name])
        (g,) = torch.autograd.grad(score, [a])
    want = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1)).detach()
    torch.testing.assert_close(cam.maps, want)


def test_activations_layers_and_top_maps(trained: dict[str, Any]) -> None:
    model, x = trained["subject"].model, trained["x"][:1]
    found = layer_maps(model, x, feature_stages(model), top=3)
    assert [(m.name, m.shape_text) for m in found] == [("conv1", "8x28x28"), ("conv2", "8x14x14"),
                                                        ("conv3", "16x7x7")]  # fmt: skip
    for m in found:
        means = m.maps.mean(dim=(1, 2))
        assert m.top == means.argsort(descending=True)[:3].tolist()
        assert (m.maps >= 0).all()  # rectified maps (after the ReLU)


def test_confident_mistakes_order() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    labels = torch.tensor([1, 1, 1, 0])
    found = confident_mistakes(probs, labels, 5)
    assert [m.index for m in found] == [3, 0, 2]  # image 1 is right; the rest by predicted probability
    assert found[0].p_predicted == pytest.approx(0.95) and found[0].p_true == pytest.approx(0.05)


def png(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(raw)).size


def test_commands_write_their_pictures(trained: dict[str, Any], tmp_path: Path, capsys) -> None:
    image = tmp_path / "square.png"
    Image.fromarray(trained["images"][0], mode="L").save(image)
    ckpt = str(trained["path"])
    assert main(["activations", ckpt, str(image), "-o", str(tmp_path / "a.png"), "--layers", "conv1,conv3",
                 "--top", "4", "--device", "cpu"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "conv1 8x28x28: most active maps" in out and "conv2" not in out
    assert main(["occlusion", ckpt, str(image), "-o", str(tmp_path / "o.png"), "--class", "T-shirt/top",
                 "--device", "cpu"]) == 0  # fmt: skip
    assert "T-shirt/top:" in capsys.readouterr().out
    assert (
        main(["gradcam", ckpt, str(image), str(image), "-o", str(tmp_path / "cams"), "--device", "cpu"]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == [
        "square-1-gradcam.png",
        "square-gradcam.png",
    ]
    assert "T-shirt/top" in capsys.readouterr().out  # the predicted class: the square's
    assert main(["mistakes", ckpt, "--dataset", "fashion-mnist", "--data-dir", str(trained["folder"]),
                 "-o", str(tmp_path / "m.png"), "--count", "3", "--device", "cpu"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()[1:]
    # The planted mistakes (squares labelled blank) are what the net is surest of being right about.
    assert sorted(int(line.split(":")[0][1:]) for line in lines) == trained["wrong"]
    assert all("said T-shirt/top" in line and "true Trouser" in line for line in lines)
    for name in ("a.png", "o.png", "m.png", "cams/square-gradcam.png"):
        w, h = png(tmp_path / name)
        assert w > 300 and h > 200


def test_command_errors(trained: dict[str, Any], tmp_path: Path, capsys) -> None:
    image = tmp_path / "square.png"
    Image.fromarray(trained["images"][0], mode="L").save(image)
    ckpt = str(trained["path"])
    assert main(["activations", ckpt, str(image), "-o", str(tmp_path / "a.png"), "--layers", "conv9"]) == 2
    assert "choose from conv1, conv2, conv3" in capsys.readouterr().err
    assert main(["occlusion", ckpt, str(image), "-o", str(tmp_path / "o.png"), "--class", "Zebra"]) == 2
    assert "not a class" in capsys.readouterr().err
    assert main(["occlusion", ckpt, str(image), "-o", str(tmp_path / "o.png"), "--patch", "40"]) == 2
    assert main(["gradcam", ckpt, str(image), "-o", str(tmp_path / "x.png")]) == 2
    assert main(["activations", ckpt, str(image), "-o", str(tmp_path / "a.jpg")]) == 2
    assert not any(tmp_path.glob("*.jpg")) and not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------------------------------------------------
# Every family


@pytest.mark.parametrize(
    ("name", "side", "layer", "shape"),
    [
        ("alexnet", 227, "conv5", (13, 13)),
        ("alexnet_torchvision", 99, "conv5", (5, 5)),
        ("alexnet_half", 99, "conv5", (5, 5)),
        ("googlenet", 64, "inception5b", (2, 2)),
        ("vgg11", 64, "conv5_2", (4, 4)),
    ],
)
def test_gradcam_default_layer_each_family(name: str, side: int, layer: str, shape: tuple[int, int]) -> None:
    model = models.create(name, num_classes=5).eval()
    cam = gradcam(model, torch.randn(2, 3, side, side))
    assert cam.layer == layer and cam.maps.shape == (2, *shape)
    assert (cam.maps >= 0).all() and len(cam.probs) == 2


def test_gradcam_two_towers_agree() -> None:
    """alexnet_parallel's towers, joined, give exactly the grouped net's maps and Grad-CAM (same weights)."""
    grouped = models.create("alexnet_grouped", num_classes=6).eval()
    parallel = models.create("alexnet_parallel", num_classes=6).eval()
    parallel.load_state_dict(grouped_to_parallel_state(grouped.state_dict()))
    x = torch.randn(1, 3, 227, 227)
    a, b = gradcam(grouped, x, target=4), gradcam(parallel, x, target=4)
    assert a.layer == b.layer == "conv5" and a.maps.shape == (1, 13, 13)
    torch.testing.assert_close(a.maps, b.maps, rtol=1e-4, atol=1e-5)
    shapes = {}
    for net in (grouped, parallel):
        with torch.no_grad(), catch(feature_stages(net)) as caught:
            net(x)
        shapes[id(net)] = {k: tuple(joined(v).shape[1:]) for k, v in caught.items()}
    assert shapes[id(grouped)] == shapes[id(parallel)]
    assert shapes[id(grouped)]["conv2"] == (256, 27, 27)  # the paper's conv2: 256 maps of 27x27


def test_occlusion_colour_scale_is_fitted_to_the_effect(tmp_path: Path) -> None:
    """A 0.90 -> 0.67 effect fills its colour scale (it was drawn on 0-1: a near-white map); the centre
    stays the unoccluded probability, so white still means "no change"."""
    from cnnlab.pictures import occlusion as occ

    pixel = torch.full((8, 8), 0.90)
    pixel[2:5, 2:5] = 0.67
    found = occ.Occlusion(0, 0.90, [0], [0], pixel[:1, :1], pixel, 3)
    low, centre, high = occ.colour_range(found)
    assert centre == pytest.approx(0.90) and low == pytest.approx(0.67) and high == pytest.approx(1.0)
    fig = occ.figure(found, np.zeros((8, 8, 3)), ["a", "b"], "t")
    norm = fig.axes[1].images[0].norm
    assert (norm.vmin, norm.vmax) == pytest.approx((0.67, 1.0))
    fig.savefig(tmp_path / "occlusion.png")
