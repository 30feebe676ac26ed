"""Setting a run up: `build_run` turns what `cnnlab train` was asked into a `Run` ready for the loop.

Its steps, in order, each one function: the resume rules (resume.py: the checkpoint to continue, checked
against the flags), the data, the resolved config, the held-out split, the network (a zoo model or the
user's own), the weights to start from, the frozen layers, the preprocessing and loaders, the optimiser and
schedule. Nothing is written here: the folder is only looked at (and locked, if it exists), so a refused
command changes nothing. The loop then opens the folder and restores its own position.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab import checkpoint, data, limits, models, summary
from cnnlab.device import eval_amp, place
from cnnlab.errors import CnnlabError
from cnnlab.models import pretrained, user
from cnnlab.settings import TrainConfig, check
from cnnlab.training import distributed, recipes, resume
from cnnlab.training.distributed import Context
from cnnlab.training.runfolder import RunFolder, RunLock, check_dir
from cnnlab.training.split import hold_out


@dataclass
class Run:
    """One training run, built and checked: what the loop trains. Its folder is not yet written."""

    cfg: TrainConfig
    folder: RunFolder
    ctx: Context
    train_ds: Any
    val_ds: Any  # the held-out split, or the test set itself when there is none (cfg.val_split 0)
    test_ds: Any  # the official test set (its first --limit-val images)
    model: nn.Module
    frozen: pretrained.Frozen | None  # --freeze: what stays fixed (its batch norms stay in eval mode)
    stats: data.DataStats
    aug: data.AugmentConfig
    train_loader: data.BatchLoader
    val_loader: data.BatchLoader
    test_loader: data.BatchLoader | None  # None when the validation set is the test set
    optimizer: torch.optim.Optimizer
    schedule: recipes.Schedule
    resumed_from: dict[str, Any] | None  # the checkpoint this run continues, if any
    setup_seconds: float
    notes: list[str] = field(default_factory=list)  # what setting up adapted, said before the first step
    source: dict[str, str] = field(default_factory=dict)  # a user's network: where it came from

    @property
    def classes(self) -> list[str]:
        return list(self.train_ds.classes)

    @property
    def in_channels(self) -> int:
        return int(getattr(self.train_ds, "channels", 3))

    @property
    def held_out(self) -> bool:
        return self.cfg.val_split > 0

    @property
    def eval_amp(self) -> torch.dtype | None:
        """The autocast the run's evaluations run under, as `cnnlab eval` restores its checkpoint."""
        return eval_amp(self.cfg.amp_dtype, self.ctx.device)


def build_run(asked: Mapping[str, Any], ctx: Context, lock: RunLock) -> Run:
    """Every step of setting a run up from the settings the user gave; raises CnnlabError (touching
    nothing) on anything impossible."""
    t0 = time.perf_counter()
    check(asked)  # the settings as given: refuse impossible values before reading anything
    plain = TrainConfig().replace(**asked)  # what the user gave, no recipe yet: enough to find the data
    folder = RunFolder(Path(recipes.run_dir_name(plain)))
    # A folder that another process is training into is refused first, before anything is read.
    distributed.on_main(ctx, lambda: lock.acquire(folder.root, create=False))
    saved: dict[str, Any] | None = None
    if plain.resume:
        saved = resume.checkpoint_to_resume(folder)
        cfg = resume.resume_config(asked, saved, folder)
        train_ds, val_ds, test_ds = _split(cfg, *_read_data(cfg, plain.download))
        resume.check_same_data(folder, saved, train_ds, val_ds, test_ds, cfg)
    else:
        full_train, test_ds = _read_data(plain, plain.download)
        cfg = _resolve(asked, full_train, ctx)
        train_ds, val_ds, test_ds = _split(cfg, full_train, test_ds)
    distributed.on_main(ctx, lambda: check_dir(folder.root, cfg.resume, cfg.overwrite))
    if not user.is_user_spec(cfg.model):  # a user's network is measured by its own dry forward pass
        _check_memory(cfg, train_ds, ctx)
    model = _build_network(cfg, len(train_ds.classes), int(getattr(train_ds, "channels", 3)))
    cfg, notes = _start_weights(cfg, model, saved)
    frozen = _freeze(cfg, model)
    model = place(model, ctx.device, cfg.channels_last)
    stats, aug = _preprocessing(cfg, train_ds, saved)
    loaders = _loaders(cfg, ctx, train_ds, val_ds, test_ds, stats, aug)
    optimizer = recipes.make_optimizer(model, cfg)
    schedule = recipes.Schedule.of(cfg, len(loaders[0]))
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
    notes += [frozen.describe()] if frozen else []
    return Run(
        cfg, folder, ctx, train_ds, val_ds, test_ds, model, frozen, stats, aug, *loaders,
        optimizer, schedule, saved, time.perf_counter() - t0, notes, network_source(cfg.model),
    )  # fmt: skip


# -- the data, the resolved config and the held-out split ----------------------------------------------------


def run_datasets(cfg: TrainConfig) -> tuple[Any, Any, Any]:
    """A finished run's (train, validation, test) sets, drawn as the run drew them, to evaluate it on the
    very images it learnt from or was scored on (a saved run never downloads)."""
    return _split(cfg, *_read_data(cfg, download=False))


def _read_data(cfg: TrainConfig, download: bool) -> tuple[Any, Any]:
    """The training set (a random subset with --limit-train) and the test set (its first --limit-val)."""
    where = cfg.data_dir or None
    train_ds = data.load(cfg.dataset, "train", where, download, skip_bad_images=cfg.skip_bad_images)
    test_ds = data.load(cfg.dataset, "test", where, download, skip_bad_images=cfg.skip_bad_images)
    return data.limit(train_ds, cfg.limit_train, cfg.seed, True), data.limit(
        test_ds, cfg.limit_val, cfg.seed, False
    )


def _resolve(asked: Mapping[str, Any], train_ds: Any, ctx: Context) -> TrainConfig:
    """A new run: the recipe's values fill what the user left unset (the data's side decides resizing)."""
    side = getattr(train_ds, "image_size", (0, 0))
    native = side[0] if side[0] == side[1] else 0
    if user.is_user_spec(
        asked["model"]
    ):  # no switches of ours; the input side is the data's (or the paper's)
        size, switches = native or 224, {}
    else:
        info = models.info(asked["model"])
        size, switches = info.input_size, dict(info.switches)
    facts = recipes.Facts(native, len(train_ds), size, switches)
    return recipes.resolve(asked, facts, ctx.device.type)


def _split(cfg: TrainConfig, train_ds: Any, test_ds: Any) -> tuple[Any, Any, Any]:
    """(train, validation, test): --val-split images held out of the training set, or validation = test."""
    if not cfg.val_split:
        return train_ds, test_ds, test_ds
    return (*hold_out(train_ds, int(cfg.val_split), cfg.seed), test_ds)


def _check_memory(cfg: TrainConfig, train_ds: Any, ctx: Context) -> None:
    """Refuse sizes that cannot fit (an --input-size or --resize of 10^5, a --pad of 10^9) before anything
    is allocated: a batch's images as the augmentation holds them, and the net's activations for it."""
    channels = int(getattr(train_ds, "channels", 3))
    per_rank = max(1, cfg.batch_size // ctx.world_size)
    side = max(cfg.input_size, cfg.resize) + 2 * cfg.pad
    fix = "lower --batch-size, --input-size, --resize or --pad"
    # The padded base batch in float, its crops and the normalised result: about three copies.
    batch = f"a batch of {per_rank} {channels}x{side}x{side} images"
    limits.check_fits(3 * 4 * per_rank * channels * side * side, batch, fix, ctx.device)
    size = (channels, cfg.input_size, cfg.input_size)
    found = summary.trace_on_meta(
        cfg.model, len(train_ds.classes), channels, cfg.model_options, size, per_rank
    )
    if found is not None and found.error is None:  # activations kept for backward, and their gradients
        need = 2 * summary.totals(found.rows).activation_bytes
        what = f"training {cfg.model} on batches of {per_rank} at {cfg.input_size} px"
        limits.check_fits(need, what, fix, ctx.device)


# -- the network, the weights it starts from, the layers it keeps ------------------------------------------


def _build_network(cfg: TrainConfig, num_classes: int, in_channels: int) -> nn.Module:
    """The zoo's model, or the user's own network (its file imported: it was named on this command line)."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every rerun
    if not user.is_user_spec(cfg.model):
        model = models.create_from(cfg.model, num_classes, in_channels, cfg.model_options)
        check_input = getattr(model, "check_input", None)
        if check_input is not None:  # a too-small --input-size fails now, not at the first step
            check_input(torch.empty(1, in_channels, cfg.input_size, cfg.input_size, device="meta"))
        return model
    return _user_network(cfg, num_classes, torch.zeros(1, in_channels, cfg.input_size, cfg.input_size))


def _user_network(cfg: TrainConfig, num_classes: int, x: torch.Tensor) -> nn.Module:
    """`--model FILE.py:Class`, built with --model-opt KEY=VALUE as its constructor's keyword arguments."""
    # Resumed, the options come from the checkpoint: only a class defined in the user's named file is built.
    load = user.load_checkpoint_network if cfg.resume else user.load_user_model
    model = load(cfg.model, **cfg.model_options)
    in_channels = x.shape[1]
    model.eval()  # one dry forward pass: a wrong class count or input fails now, in one line
    try:
        with torch.no_grad():
            out = models.split_outputs(model(x))[0]
    except Exception as exc:
        raise CnnlabError(
            f"{cfg.model} failed on a {in_channels}x{cfg.input_size}x{cfg.input_size} input "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); set --input-size, or its "
            "constructor's arguments with --model-opt KEY=VALUE"
        ) from None
    model.train()
    if out.dim() != 2 or out.shape[1] != num_classes:
        raise CnnlabError(
            f"{cfg.model} gives outputs of shape {list(out.shape)}, the data set has {num_classes} classes: "
            f"pass its constructor's class count, e.g. --model-opt num_classes={num_classes}"
        )
    return model


def network_source(spec: str) -> dict[str, str]:
    """Where a user's network came from, for config.json and the checkpoints ({} for a zoo model)."""
    if not user.is_user_spec(spec):
        return {}
    where, attr = user.split_spec(spec)
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).resolve()
        return {"spec": spec, "file": str(path), "attr": attr, "sha256": pretrained.sha256_of(path)}
    module = sys.modules.get(where)
    return {"spec": spec, "module": where, "attr": attr, "file": str(getattr(module, "__file__", None) or "")}


def _start_weights(
    cfg: TrainConfig, model: nn.Module, saved: dict[str, Any] | None
) -> tuple[TrainConfig, list[str]]:
    """The weights the run starts from: the checkpoint's when resuming, else --weights (digest recorded)."""
    if saved is not None:
        checkpoint.load_weights(model, saved)
        return cfg, []
    if not cfg.weights:
        return cfg, []
    loaded = pretrained.load_pretrained(model, cfg.weights)
    return cfg.replace(weights_sha256=loaded.sha256), list(loaded.notes)


def _freeze(cfg: TrainConfig, model: nn.Module) -> pretrained.Frozen | None:
    if not cfg.freeze:
        return None
    frozen = pretrained.freeze(model, cfg.freeze)
    if not any(p.requires_grad for p in model.parameters()):
        raise CnnlabError(f"--freeze {cfg.freeze} leaves nothing to train; freeze fewer layers")
    return frozen


# -- preprocessing and loaders -----------------------------------------------------------------------------


def _preprocessing(
    cfg: TrainConfig, train_ds: Any, saved: dict[str, Any] | None
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
    cfg: TrainConfig,
    ctx: Context,
    train_ds: Any,
    val_ds: Any,
    test_ds: Any,
    stats: data.DataStats,
    aug: data.AugmentConfig,
) -> tuple[data.BatchLoader, data.BatchLoader, data.BatchLoader | None]:
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
    # Evaluation holds no gradients: twice the batch, in images (ten-crop makes ten views of each).
    eval_batch = max(1, 2 * per_rank // (10 if cfg.val_views == "tencrop" else 2))
    val_loader = data.BatchLoader(val_ds, eval_batch, train=False, views=cfg.val_views, **common)
    test_loader = None
    if test_ds is not val_ds:
        test_loader = data.BatchLoader(test_ds, eval_batch, train=False, views=cfg.val_views, **common)
    return train_loader, val_loader, test_loader
