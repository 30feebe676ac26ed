"""Setting a run up: `build_run` turns what `cnnlab train` was asked into a `Run` ready for the loop.

Its steps, in order, each one function below: the resume rules (the checkpoint to continue, checked
against the flags), the data, the resolved config, the model, the preprocessing and loaders, the optimiser
and schedule. Nothing is written here: the folder is only looked at (and locked, if it exists), so a
refused command changes nothing. The loop then opens the folder and restores its own position.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import checkpoint, data, limits, models
from cnnlab.errors import CnnlabError
from cnnlab.training import distributed, recipes
from cnnlab.training.config import (
    MODEL_SWITCHES,
    PER_INVOCATION,
    RESUME_MAY_CHANGE,
    RunConfig,
    TrainConfig,
    check,
    flag,
    parse_model_options,
)
from cnnlab.training.distributed import Context
from cnnlab.training.runfolder import RunFolder, RunLock, check_dir


@dataclass
class Run:
    """One training run, built and checked: what the loop trains. Its folder is not yet written."""

    cfg: RunConfig
    folder: RunFolder
    ctx: Context
    train_ds: Any
    val_ds: Any
    model: nn.Module
    stats: data.DataStats
    aug: data.AugmentConfig
    train_loader: data.BatchLoader
    val_loader: data.BatchLoader
    optimizer: torch.optim.Optimizer
    schedule: recipes.Schedule
    resumed_from: dict[str, Any] | None  # the checkpoint this run continues, if any
    setup_seconds: float

    @property
    def classes(self) -> list[str]:
        return list(self.train_ds.classes)

    @property
    def in_channels(self) -> int:
        return int(getattr(self.train_ds, "channels", 3))


def build_run(asked: TrainConfig, given: set[str], ctx: Context, lock: RunLock) -> Run:
    """Every step of setting a run up; raises CnnlabError (touching nothing) on anything impossible."""
    t0 = time.perf_counter()
    check(asked)  # the flags as given: refuse impossible values before reading anything
    folder = RunFolder(Path(recipes.run_dir_name(asked)))
    # A folder that another process is training into is refused first, before anything is read.
    distributed.on_main(ctx, lambda: lock.acquire(folder.root, create=False))
    saved: dict[str, Any] | None = None
    if asked.resume:
        saved = resumed = _checkpoint_to_resume(folder)
        cfg = _resume_config(asked, given, resumed, folder)
        train_ds, val_ds = _load_data(cfg)
        _check_same_data(folder, resumed, train_ds, val_ds, cfg)
    else:
        train_ds, val_ds = _load_data(asked)
        cfg = _resolve(asked, train_ds, ctx)
    distributed.on_main(ctx, lambda: check_dir(folder.root, cfg.resume, cfg.overwrite))
    _check_memory(cfg, train_ds, ctx)
    model = _build_model(cfg, train_ds, saved, ctx)
    stats, aug = _preprocessing(cfg, train_ds, saved)
    train_loader, val_loader = _loaders(cfg, ctx, train_ds, val_ds, stats, aug)
    optimizer = recipes.make_optimizer(model, cfg)
    schedule = recipes.Schedule.of(cfg, len(train_loader))
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
    return Run(
        cfg, folder, ctx, train_ds, val_ds, model, stats, aug, train_loader, val_loader,
        optimizer, schedule, saved, time.perf_counter() - t0,
    )  # fmt: skip


# -- 1. the resume rules ---------------------------------------------------------------------------------


def _checkpoint_to_resume(folder: RunFolder) -> dict[str, Any]:
    if not folder.last.is_file():
        why = "; drop --resume to start a new run"
        if folder.config.is_file():
            why = " (it stopped before its first checkpoint): run the same command without --resume"
        raise CnnlabError(f"nothing to resume in {folder.root}: no checkpoints/last.pt{why}")
    return checkpoint.load(folder.last)


def _resume_config(
    asked: TrainConfig, given: set[str], saved: dict[str, Any], folder: RunFolder
) -> RunConfig:
    """The run's saved config with the few settings a resumed run may change; refuse any other change."""
    run = recipes.from_saved(saved["config"], saved["model_options"])
    where = f"the run in {folder.root} trained {saved['model_name']} with {saved['num_classes']} classes"
    if "model" in given and asked.model != saved["model_name"]:
        raise CnnlabError(
            f"--resume: {folder.last} holds model {saved['model_name']!r}, not {asked.model!r}; "
            "drop --model or use another --out"
        )
    # An image folder that moved is the same data when its content hash says so (`_check_same_data`).
    moved = "dataset" in given and asked.dataset != run.dataset
    if moved and not (asked.dataset.startswith("folder:") and run.dataset.startswith("folder:")):
        raise CnnlabError(
            f"--resume: {where} on {run.dataset!r}, not {asked.dataset!r}; "
            "drop --dataset or use another --out"
        )
    _refuse_changes(asked, given, run)
    changes: dict[str, Any] = {
        name: getattr(asked, name) for name in given & (RESUME_MAY_CHANGE - PER_INVOCATION)
    }
    if moved:
        changes["dataset"] = asked.dataset
    merged = run.replace(
        **changes,
        out=str(folder.root),  # the folder may have moved since
        resume=True,
        overwrite=False,
        device=asked.device,
        workers=asked.workers,
        progress=asked.progress,
        stop_after=asked.stop_after or 0,
    )
    trained = int(saved["epoch"]) + (1 if int(saved["step"]) else 0)  # a started epoch counts
    if merged.epochs < trained:
        raise CnnlabError(
            f"--epochs {merged.epochs} is fewer than the {trained} epochs this run has trained"
            f"{' (the last one in part)' if int(saved['step']) else ''}; a run cannot be shortened: pass "
            f"--epochs {trained} or more, or start a new run with another --out"
        )
    if merged.schedule == "onecycle" and merged.epochs != run.epochs:
        raise CnnlabError(
            f"--epochs {merged.epochs}: a onecycle schedule is fixed to its {run.epochs} epochs and cannot "
            "be stretched; start a new run with another --out"
        )
    return merged


def _refuse_changes(asked: TrainConfig, given: set[str], run: RunConfig) -> None:
    """A resumed run keeps its settings: any other flag given must say what the run already has."""
    changed = []
    for name in sorted(given - RESUME_MAY_CHANGE - {"model", "dataset", "model_opt", *MODEL_SWITCHES}):
        have = run.amp_dtype != "none" if name == "amp" else getattr(run, name)
        if getattr(asked, name) != have:
            changed.append(f"{flag(name)} {getattr(asked, name)!r} differs from the run's {have!r}")
    for key, value in parse_model_options(asked).items():
        have = run.model_options.get(key)
        if have is None or str(have) != str(value):
            name = flag(key) if key in MODEL_SWITCHES else f"--model-opt {key}"
            changed.append(f"{name} {value!r} differs from the run's {have!r}")
    if changed:
        raise CnnlabError(
            f"--resume keeps the run's settings: {'; '.join(changed)}; drop those flags, "
            "or start a new run with another --out"
        )


def _check_same_data(
    folder: RunFolder, saved: dict[str, Any], train_ds: Any, val_ds: Any, cfg: RunConfig
) -> None:
    """Refuse to resume on data other than the run's: the checkpoint records the training set's identity
    and config.json the validation set's, each with a content hash (`identity()`). --data-dir may change,
    and so may an image folder's place: the same files elsewhere hash the same. A run that recorded no hash
    is not checked, unless its folder moved (then nothing could tell it is the same)."""
    if int(saved["num_classes"]) != len(train_ds.classes):
        raise CnnlabError(
            f"--resume: the checkpoint's {saved['model_name']} has {saved['num_classes']} classes, "
            f"data set {cfg.dataset!r} has {len(train_ds.classes)}"
        )
    moved = cfg.dataset != recipes.from_saved(saved["config"], saved["model_options"]).dataset
    try:
        val_rec = json.loads(folder.config.read_text())["data"]["val"]
    except (OSError, ValueError, KeyError, TypeError):
        val_rec = None
    for what, rec, ds in (("training", saved.get("dataset"), train_ds), ("validation", val_rec, val_ds)):
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
            if moved:
                raise CnnlabError(
                    f"--resume with --dataset {ds.name!r}: the run in {folder.root} recorded no content "
                    f"hash of its {what} data, so cnnlab cannot tell the moved folder is the same; "
                    "pass its old --dataset"
                )
            continue
        now = ds.identity()
        if now["sha256"] != rec["sha256"] or now["count"] != rec.get("count"):
            raise CnnlabError(
                f"--resume: the {what} data of {ds.name!r} differs from the data the run in {folder.root} "
                f"used ({rec.get('count')} images, content hash {rec['sha256'][:12]} recorded; now "
                f"{now['count']} images, {now['sha256'][:12]}); point --data-dir at the run's data, "
                "or start a new run with another --out"
            )


# -- 2. the data and the resolved config -----------------------------------------------------------------


def _load_data(cfg: TrainConfig | RunConfig) -> tuple[Any, Any]:
    """The training set (a random subset with --limit-train) and the validation set (its first N)."""
    where, download = cfg.data_dir or None, getattr(cfg, "download", False)  # a RunConfig never downloads
    train_ds = data.load(cfg.dataset, "train", where, download, skip_bad_images=cfg.skip_bad_images)
    val_ds = data.load(cfg.dataset, "val", where, download, skip_bad_images=cfg.skip_bad_images)
    return data.limit(train_ds, cfg.limit_train, cfg.seed, True), data.limit(
        val_ds, cfg.limit_val, cfg.seed, False
    )


def _resolve(asked: TrainConfig, train_ds: Any, ctx: Context) -> RunConfig:
    """A new run: the recipe's values fill what the user left unset (the data's side decides resizing)."""
    side = getattr(train_ds, "image_size", (0, 0))
    native = side[0] if side[0] == side[1] else 0
    info = models.info(asked.model)
    return recipes.resolve(asked, native, info.input_size, set(info.switches), ctx.device.type)


# -- 3. the model ----------------------------------------------------------------------------------------


def _build_model(cfg: RunConfig, train_ds: Any, saved: dict[str, Any] | None, ctx: Context) -> nn.Module:
    in_channels = int(getattr(train_ds, "channels", 3))
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every rerun
    model = models.create_from(cfg.model, len(train_ds.classes), in_channels, cfg.model_options)
    check_input = getattr(model, "check_input", None)
    if check_input is not None:  # a too-small --input-size fails now, not at the first step
        check_input(torch.empty(1, in_channels, cfg.input_size, cfg.input_size, device="meta"))
    if saved is not None:
        checkpoint.load_weights(model, saved)
    model = model.to(ctx.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _check_memory(cfg: RunConfig, train_ds: Any, ctx: Context) -> None:
    """Refuse sizes that cannot fit (an --input-size or --resize of 10^5, a --pad of 10^9) before anything
    is allocated: a batch's images as the augmentation holds them, and the net's activations for it."""
    from cnnlab import summary

    channels = int(getattr(train_ds, "channels", 3))
    per_rank = max(1, cfg.batch_size // ctx.world_size)
    side = max(cfg.input_size, cfg.resize) + 2 * cfg.pad
    fix = "lower --batch-size, --input-size, --resize or --pad"
    # The padded base batch in float, its crops and the normalised result: about three copies.
    batch = f"a batch of {per_rank} {channels}x{side}x{side} images"
    limits.check_fits(3 * 4 * per_rank * channels * side * side, batch, fix, ctx.device)
    try:
        with torch.device("meta"):
            shape = models.create_from(cfg.model, len(train_ds.classes), channels, cfg.model_options)
        found = summary.trace(shape, (channels, cfg.input_size, cfg.input_size), per_rank)
    except CnnlabError:
        raise
    except Exception:  # a model that cannot run on meta: the real forward reports its own errors
        return
    if found.error is None:  # activations kept for the backward pass, and their gradients
        need = 2 * summary.totals(found.rows).activation_bytes
        what = f"training {cfg.model} on batches of {per_rank} at {cfg.input_size} px"
        limits.check_fits(need, what, fix, ctx.device)


# -- 4. preprocessing and loaders ------------------------------------------------------------------------


def _preprocessing(
    cfg: RunConfig, train_ds: Any, saved: dict[str, Any] | None
) -> tuple[data.DataStats, data.AugmentConfig]:
    """The normalisation statistics (the run's own when resuming) and the augmentation settings."""
    stats = data.DataStats.from_dict(saved["data_stats"]) if saved else data.compute_stats(train_ds)
    aug = data.AugmentConfig(
        input_size=cfg.input_size,
        resize=cfg.resize or None,
        random_crop=cfg.random_crop,
        pad=cfg.pad,
        flip=cfg.flip,
        pca_std=cfg.pca_std,
        normalize=cfg.normalize,
        pca_scale=cfg.pca_scale,
    )
    return stats, aug


def _loaders(
    cfg: RunConfig, ctx: Context, train_ds: Any, val_ds: Any, stats: data.DataStats, aug: data.AugmentConfig
) -> tuple[data.BatchLoader, data.BatchLoader]:
    if cfg.batch_size % ctx.world_size:
        raise CnnlabError(
            f"--batch-size {cfg.batch_size} does not split evenly over {ctx.world_size} "
            "processes; use a multiple of the process count"
        )
    per_rank = cfg.batch_size // ctx.world_size
    common: dict[str, Any] = {
        "aug": aug, "stats": stats, "seed": cfg.seed, "device": ctx.device, "rank": ctx.rank,
        "world_size": ctx.world_size, "num_workers": cfg.workers,
    }  # fmt: skip
    train_loader = data.BatchLoader(train_ds, per_rank, train=True, **common)
    # Validation holds no gradients: twice the batch, in images (ten-crop makes ten views of each).
    val_batch = max(1, 2 * per_rank // (10 if cfg.val_views == "tencrop" else 2))
    val_loader = data.BatchLoader(val_ds, val_batch, train=False, views=cfg.val_views, **common)
    return train_loader, val_loader
