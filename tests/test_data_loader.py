"""BatchLoader: same seed same batches, exact resume at start_step, DDP shards, step counts."""

from __future__ import annotations

import pytest
import torch

from cnnlab import data
from cnnlab.errors import CnnlabError


def dataset(n: int = 50, channels: int = 3, size: int = 6) -> data.ArrayDataset:
    g = torch.Generator().manual_seed(n)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    return data.ArrayDataset("toy", "train", images, torch.arange(n) % 7, [str(i) for i in range(7)])


AUG = data.AugmentConfig(6, pad=1, flip=True, pca_std=0.1)


def loader(ds: data.ArrayDataset, seed: int = 0, batch: int = 8, **kw: object) -> data.BatchLoader:
    stats = data.compute_stats(ds)
    opts: dict = dict(train=True, aug=AUG, stats=stats, seed=seed, device="cpu")
    opts.update(kw)
    return data.BatchLoader(ds, batch, **opts)


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    ds = dataset()
    a = list(loader(ds, seed=5).epoch(2))
    b = list(loader(ds, seed=5).epoch(2))
    c = list(loader(ds, seed=6).epoch(2))
    d = list(loader(ds, seed=5).epoch(3))
    assert len(a) == 6
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0]) and not torch.equal(a[0][0], d[0][0])


def test_resume_at_start_step_is_exact() -> None:
    ds = dataset()
    full = list(loader(ds, seed=1).epoch(4))
    for start in (0, 1, 5, 6):
        resumed = list(loader(ds, seed=1).epoch(4, start_step=start))  # a fresh loader, as after a restart
        assert len(resumed) == len(full) - start
        for (xr, yr), (xf, yf) in zip(resumed, full[start:], strict=True):
            assert torch.equal(xr, xf) and torch.equal(yr, yf)
    with pytest.raises(CnnlabError, match="start step 7 outside"):
        list(loader(ds).epoch(0, start_step=7))


def test_labels_follow_their_images_and_each_sample_once() -> None:
    ds = dataset(n=45)
    ld = loader(ds, batch=8, aug=data.AugmentConfig.plain(6, normalize="none"))
    idx = ld.indices(0)
    assert len(ld) == 5 and len(idx) == 40 == len(ld) * 8  # 45 // 8 full batches, remainder dropped
    assert len(set(idx.tolist())) == 40
    xs, ys = zip(*ld.epoch(0), strict=True)
    assert torch.equal(torch.cat(ys), ds.labels[idx])
    assert torch.allclose(torch.cat(xs), ds.images[idx].float() / 255)
    assert not torch.equal(idx, loader(ds, batch=8).indices(1))  # reshuffled every epoch


def test_ddp_shards_are_disjoint_cover_the_epoch_and_step_together() -> None:
    n, world = 101, 4
    ds = dataset(n=n)
    shards = [loader(ds, seed=3, batch=5, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == (n // world) // 5
    for epoch in (0, 1):
        parts = [data.shard_indices(n, seed=3, epoch=epoch, rank=r, world_size=world) for r in range(world)]
        flat = torch.cat(parts).tolist()
        assert len(flat) == len(set(flat)) == world * (n // world)  # disjoint, equal sizes
        order = data.shard_indices(n, seed=3, epoch=epoch)  # the one-rank permutation
        assert flat == order[: world * (n // world)].tolist()  # together: the epoch, less n mod w samples
        for r, s in enumerate(shards):
            assert torch.equal(s.indices(epoch), parts[r][: len(s) * 5])
    # Evaluation shards cover every sample exactly once, in order.
    ev = [
        data.shard_indices(n, seed=3, epoch=0, rank=r, world_size=world, shuffle=False, drop_remainder=False)
        for r in range(world)
    ]
    assert torch.cat(ev).tolist() == list(range(n))


def test_ranks_get_different_augmentation_streams_by_sample_not_by_rank() -> None:
    """A batch's augmentation depends on (seed, epoch, step): two ranks at the same step draw the same
    random numbers but for different images, so no sample is augmented identically across an epoch."""
    ds = dataset(n=64)
    r0, r1 = (loader(ds, seed=2, batch=8, rank=r, world_size=2) for r in range(2))
    x0, _ = next(iter(r0.epoch(0)))
    x1, _ = next(iter(r1.epoch(0)))
    assert not torch.equal(x0, x1)
    assert set(r0.indices(0).tolist()).isdisjoint(r1.indices(0).tolist())


def test_small_shard_and_evaluation_step_counts() -> None:
    ds = dataset(n=10)
    assert len(loader(ds, batch=32)) == 1  # fewer images than a batch: one batch of them all
    ((x, _y),) = loader(ds, batch=32).epoch(0)
    assert x.shape[0] == 10
    ev = loader(ds, batch=4, train=False, views="flip")
    assert len(ev) == 3
    batches = list(ev)
    assert [b[0].shape[:2] for b in batches] == [(2, 4), (2, 4), (2, 2)]
    assert torch.cat([b[1] for b in batches]).tolist() == ds.labels.tolist()  # in order, all of them
    with pytest.raises(CnnlabError, match="too few for 16 ranks"):
        loader(ds, rank=0, world_size=16)
    with pytest.raises(CnnlabError, match="unknown test views"):
        loader(ds, train=False, views="corners")
    with pytest.raises(CnnlabError, match="statistics are for 3-channel images"):
        data.BatchLoader(
            dataset(channels=1), 4, train=True, aug=AUG, stats=data.compute_stats(ds), seed=0, device="cpu"
        )


def test_grey_and_colour_shapes() -> None:
    for channels in (1, 3):
        ds = dataset(n=16, channels=channels, size=8)
        ld = loader(ds, batch=4, aug=data.AugmentConfig(6, pca_std=0.1))
        x, y = next(iter(ld))
        assert x.shape == (4, channels, 6, 6) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_cli_data_command(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    from cnnlab import cli

    assert cli.main(["data", "--dataset", "digits", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "train: 1,438 images 1x8x8" in out and "PCA lighting: eigenvalues" in out
    assert cli.main(["data", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: cifar10 not found") and err.count("\n") == 1


def test_add_data_args() -> None:
    import argparse

    from cnnlab.commands.common import add_data_args

    parser = argparse.ArgumentParser()
    add_data_args(parser)
    args = parser.parse_args(["--dataset", "digits", "--data-dir", "/x", "--skip-bad-images"])
    assert (args.dataset, args.data_dir, args.download, args.skip_bad_images) == ("digits", "/x", False, True)
    ds = data.load_from_args(parser.parse_args(["--dataset", "digits"]), "test")
    assert isinstance(ds, data.ArrayDataset) and ds.name == "digits"
