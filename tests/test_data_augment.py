"""Batched augmentation: statistics and PCA lighting against numpy, crop/flip geometry, the ten views,
normalisation and resizing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab import data
from cnnlab.data.loader import generator
from cnnlab.errors import CnnlabError


def colour_images(n: int = 40, size: int = 6, seed: int = 0) -> data.ArrayDataset:
    """Images whose RGB values are correlated (a mixing matrix), like natural images' colours."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (n, size, size, 3)) @ np.array(
        [[1.0, 0.8, 0.5], [0.0, 0.6, 0.4], [0.0, 0.0, 0.3]]
    )
    pixels = np.clip(128 + 40 * base, 0, 255).astype(np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    return data.ArrayDataset("colours", "train", images, torch.arange(n) % 3, ["a", "b", "c"])


def test_stats_against_numpy() -> None:
    ds = colour_images()
    stats = data.compute_stats(ds)
    px = ds.images.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy() / 255.0
    cov = np.cov(px.T, bias=True)
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    np.testing.assert_allclose(stats.mean.numpy(), px.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std.numpy(), px.std(0), rtol=1e-5)
    np.testing.assert_allclose(stats.eigvals.numpy(), vals, rtol=1e-4)
    ours = stats.eigvecs.double().numpy()
    np.testing.assert_allclose(np.abs((ours * vecs).sum(0)), 1.0, rtol=1e-5)  # same axes, up to sign
    np.testing.assert_allclose(ours.T @ ours, np.eye(3), atol=1e-6)
    assert all(ours[np.abs(ours[:, i]).argmax(), i] > 0 for i in range(3))  # the stated sign convention
    np.testing.assert_allclose(stats.mean_image.numpy(), ds.images.double().mean(0).numpy() / 255, rtol=1e-5)
    assert stats.count == len(ds)
    # A seeded subset gives statistics of exactly those images.
    sub = data.compute_stats(ds, max_images=10, seed=4)
    assert sub.count == 10 and not torch.allclose(sub.mean, stats.mean)


def test_stats_round_trip_through_a_weights_only_checkpoint() -> None:
    stats = data.compute_stats(colour_images())
    buf = io.BytesIO()
    torch.save({"stats": stats.to_dict()}, buf)
    buf.seek(0)
    back = data.DataStats.from_dict(torch.load(buf, weights_only=True)["stats"])
    for name in ("mean", "std", "mean_image", "eigvals", "eigvecs"):
        assert torch.equal(getattr(back, name), getattr(stats, name)), name
    assert back.count == stats.count


@pytest.mark.parametrize("scale", ["std", "eigenvalue"])
def test_lighting_offsets_formula(scale: str) -> None:
    stats = data.compute_stats(colour_images())
    alpha = torch.randn(5, 3, generator=torch.Generator().manual_seed(1)) * 0.1
    got = data.lighting_offsets(alpha, stats.eigvals, stats.eigvecs, scale)
    lam = stats.eigvals.double().numpy()
    s = np.sqrt(lam) if scale == "std" else lam
    p = stats.eigvecs.double().numpy()
    for b in range(5):  # sum_i alpha_i s_i p_i, written out
        want = sum(alpha[b, i].item() * s[i] * p[:, i] for i in range(3))
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-5, atol=1e-8)


def test_lighting_shifts_each_image_by_its_own_colour() -> None:
    """With geometry off, a training image is x/255 plus one RGB offset, and over many images those
    offsets have covariance pca_std^2 * P diag(lambda) P^T (the "std" convention)."""
    ds = colour_images(n=3000, size=2)
    stats = data.compute_stats(ds)
    aug = data.AugmentConfig(2, random_crop=False, flip=False, pca_std=0.1, normalize="none")
    ((x, _),) = data.BatchLoader(ds, 3000, train=True, aug=aug, stats=stats, seed=0, device="cpu").epoch(0)
    order = data.BatchLoader(ds, 3000, train=True, aug=aug, stats=stats, seed=0, device="cpu").indices(0)
    offset = x - ds.images[order].float() / 255
    per_image = offset.mean((2, 3))
    assert torch.allclose(offset, per_image[:, :, None, None].expand_as(offset), atol=1e-6)
    emp = np.cov(per_image.double().numpy().T, bias=True)
    p, lam = stats.eigvecs.double().numpy(), stats.eigvals.double().numpy()
    want = 0.1**2 * p @ np.diag(lam) @ p.T
    assert np.linalg.norm(emp - want) / np.linalg.norm(want) < 0.1


def test_crop_flip_matches_slicing() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 2, 9, 11), dtype=torch.uint8, generator=g)
    top, left = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 7, (6,), generator=g)
    flip = torch.tensor([True, False, True, True, False, False])
    got = data.crop_flip(x, top, left, 5, flip)
    for b in range(6):
        want = x[b, :, top[b] : top[b] + 5, left[b] : left[b] + 5]
        assert torch.equal(got[b], want.flip(-1) if flip[b] else want)
    assert torch.equal(
        data.crop_flip(x, top, left, 5, None)[1], x[1, :, top[1] : top[1] + 5, left[1] : left[1] + 5]
    )


def test_training_crops_are_crops_of_the_padded_image() -> None:
    ds = colour_images(n=24, size=6)
    stats = data.compute_stats(ds)
    aug = data.AugmentConfig(6, pad=2, normalize="none")
    loader = data.BatchLoader(ds, 24, train=True, aug=aug, stats=stats, seed=1, device="cpu")
    ((x, _y),) = loader.epoch(0)
    src = F.pad(ds.images[loader.indices(0)], (2, 2, 2, 2))
    found = set()
    for b in range(24):
        got = torch.round(x[b] * 255).to(torch.uint8)
        crops = {(t, l): src[b, :, t : t + 6, l : l + 6] for t in range(5) for l in range(5)}
        hits = [
            (t, l, f)
            for (t, l), c in crops.items()
            for f in (False, True)
            if torch.equal(got, c.flip(-1) if f else c)
        ]
        assert hits, f"image {b} is no crop of its padded source"
        found.add(hits[0])
    assert len({f for _, _, f in found}) == 2 and len({(t, l) for t, l, _ in found}) > 5


def test_prepadded_loader_equals_plain_augmenter() -> None:
    """The loader's pad-once shortcut gives what padding each batch gives."""
    ds = colour_images(n=16, size=6)
    stats = data.compute_stats(ds)
    aug = data.AugmentConfig(6, pad=1, pca_std=0.1)
    loader = data.BatchLoader(ds, 8, train=True, aug=aug, stats=stats, seed=2, device="cpu")
    assert loader.augmenter.prepad
    plain = data.Augmenter(aug, stats, (6, 6), "cpu")
    for step, (x, _) in enumerate(loader.epoch(3)):
        idx = loader.indices(3)[step * 8 : (step + 1) * 8]
        want = plain.train(ds.images[idx], generator(2, 1, 3, step))
        assert torch.allclose(x, want, atol=1e-6)


def test_ten_crop_geometry() -> None:
    x = torch.arange(2 * 3 * 8 * 10, dtype=torch.float32).view(2, 3, 8, 10)
    s = 5
    views = data.eval_views(x, "tencrop", s)
    assert views.shape == (10, 2, 3, s, s)
    want = [
        x[..., 2:7, 2:7],  # centre: (8-5)/2 = 1.5 rounds to 2, (10-5)/2 = 2.5 rounds to 2 (as torchvision)
        x[..., :s, :s], x[..., :s, -s:], x[..., -s:, :s], x[..., -s:, -s:],
    ]  # fmt: skip
    for i, w in enumerate(want):
        assert torch.equal(views[i], w)
        assert torch.equal(views[i + 5], w.flip(-1))
    assert torch.equal(data.eval_views(x, "flip", s), views[[0, 5]])
    assert torch.equal(data.eval_views(x, "center", s), views[:1])
    # The same ten patches as torchvision's ten_crop, in another order. (With an odd margin, as above,
    # torchvision's tenth view is the centre crop of the mirrored image, one pixel off the mirror of the
    # centre crop; ours are the paper's "five patches and their reflections" exactly, so compare at even
    # margins.)
    from torchvision.transforms.v2.functional import ten_crop

    ours, theirs = data.eval_views(x, "tencrop", 4), ten_crop(x, [4, 4])
    assert len(theirs) == len(ours) == 10
    for v in theirs:
        assert sum(torch.equal(v, o) for o in ours) == 1
    with pytest.raises(CnnlabError, match="cannot take 9x9 test crops from 8x10"):
        data.eval_views(x, "tencrop", 9)
    with pytest.raises(CnnlabError, match="unknown test views"):
        data.eval_views(x, "twelve", 5)


def test_upsampling_to_the_model_input() -> None:
    """Fashion-MNIST-sized images for the full AlexNet: 28 -> 227 with one interpolate on the batch."""
    images = torch.randint(
        0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    ds = data.ArrayDataset("f", "train", images, torch.zeros(4, dtype=torch.int64), ["x"])
    stats = data.compute_stats(ds)
    aug = data.AugmentConfig(227, pad=2)
    kw = dict(aug=aug, stats=stats, seed=0, device="cpu")
    ((x, _),) = data.BatchLoader(ds, 4, train=True, **kw).epoch(0)
    assert x.shape == (4, 1, 227, 227)
    ((v, _),) = data.BatchLoader(ds, 4, train=False, views="tencrop", **kw).epoch(0)
    assert v.shape == (10, 4, 1, 227, 227)
    big = F.interpolate(images.float(), size=(227, 227), mode="bilinear", align_corners=False)
    want = (big / 255 - stats.mean.view(1, 1, 1, 1)) / stats.std.view(1, 1, 1, 1)
    assert torch.allclose(v[0], want, atol=1e-4)
    assert torch.allclose(v[5], want.flip(-1), atol=1e-4)


def test_ten_crop_of_images_no_larger_than_the_input_pads_as_training_did() -> None:
    """28x28 images and a 28 input: the ten crops come from the image padded by the run's training pad
    (the extreme translations training drew), not ten copies of the centre crop and its mirror."""
    images = torch.randint(
        1, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    ds = data.ArrayDataset("f", "test", images, torch.zeros(3, dtype=torch.int64), ["x"])
    stats = data.compute_stats(ds)
    kw = dict(stats=stats, seed=0, device="cpu")
    aug = data.AugmentConfig(28, pad=2, normalize="none")
    ((v, _),) = data.BatchLoader(ds, 3, train=False, views="tencrop", aug=aug, **kw).epoch(0)
    padded = torch.nn.functional.pad(images.float() / 255, (2, 2, 2, 2))
    assert torch.allclose(v[0], images.float() / 255)  # the centre of the padded image is the image
    corners = [padded[..., :28, :28], padded[..., :28, 4:], padded[..., 4:, :28], padded[..., 4:, 4:]]
    for i, corner in enumerate(corners, start=1):
        assert torch.allclose(v[i], corner) and torch.allclose(v[i + 5], corner.flip(-1))
    assert len({v[i].sum().item() for i in range(5)}) == 5  # five different patches
    # A run trained without padded random crops has nothing to take them from: refused, before any batch.
    for plain in (data.AugmentConfig(28, pad=2, random_crop=False), data.AugmentConfig(28, pad=0)):
        with pytest.raises(
            CnnlabError, match=r"--views tencrop needs images larger than the 28x28 crop.*flip"
        ):
            data.BatchLoader(ds, 3, train=False, views="tencrop", aug=plain, **kw)
        data.BatchLoader(ds, 3, train=False, views="flip", aug=plain, **kw)  # other views are fine


@pytest.mark.parametrize("normalize", ["channel", "pixel"])
def test_normalisation(normalize: str) -> None:
    ds = colour_images(n=30)
    stats = data.compute_stats(ds)
    aug = data.AugmentConfig.plain(6, normalize=normalize)
    ((v, _),) = data.BatchLoader(ds, 30, train=False, aug=aug, stats=stats, seed=0, device="cpu").epoch(0)
    x = v[0].double()
    if normalize == "channel":  # zero mean, unit std per channel
        assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5)
        assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4)
    else:  # the mean image removed: zero mean at every pixel, [0, 1] scale kept
        assert torch.allclose(x.mean(0), torch.zeros_like(x[0]), atol=1e-6)
        assert torch.allclose(x[3], ds.images[3].double() / 255 - stats.mean_image.double(), atol=1e-6)


def test_paper_geometry() -> None:
    """Section 4.1 on small images: resized to 256, random 227 patches, ten 227 views at test time."""
    ds = colour_images(n=3, size=32)
    stats = data.compute_stats(ds)
    aug = data.AugmentConfig.paper()
    assert (aug.resize, aug.input_size, aug.pca_std, aug.normalize) == (256, 227, 0.1, "pixel")
    kw = dict(aug=aug, stats=stats, seed=0, device="cpu")
    ((x, _),) = data.BatchLoader(ds, 3, train=True, **kw).epoch(0)
    ((v, _),) = data.BatchLoader(ds, 3, train=False, views="tencrop", **kw).epoch(0)
    assert x.shape == (3, 3, 227, 227) and v.shape == (10, 3, 3, 227, 227)
    assert not torch.equal(v[1], v[4])  # corners of a 256 image really differ


def test_config_checks_and_round_trip() -> None:
    aug = data.AugmentConfig(32, pad=4, pca_std=0.1, pca_scale="eigenvalue")
    assert data.AugmentConfig.from_dict({**aug.to_dict(), "future_field": 1}) == aug
    for bad in (dict(normalize="zca"), dict(pad=-1), dict(pca_std=-0.1), dict(resize=0), dict(pca_scale="x")):
        with pytest.raises(CnnlabError):
            data.AugmentConfig(32, **bad)  # type: ignore[arg-type]
    with pytest.raises(CnnlabError):
        data.AugmentConfig(0)
