"""Setting a run up and writing its folder: everything around the training loop that is not a step.

`prepare` turns a TrainConfig into a ready run: the checkpoint to resume (checked against the flags), the
data, the resolved config, the model, optimiser, schedule and loaders, and a run folder that is new (or
the one being resumed) and writable. `RunSetup` then records each epoch (metrics.csv, TensorBoard) and
finishes the folder (curves.png, then summary.txt last, so a folder with a summary is a complete run).
The folder itself (its lock, when it may be created or replaced) is `cnnlab/runfolder.py`.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import cnnlab
from cnnlab import checkpoint, data, distributed, models, recipes, report, runfolder
from cnnlab.errors import CnnlabError
from cnnlab.recipes import RESUME_MAY_CHANGE, TrainConfig
from cnnlab.runfolder import RunLock

__all__ = ["RunSetup", "default_out", "model_switches", "prepare"]


def default_out(cfg: TrainConfig) -> Path:
    return Path(recipes.resolve_out(cfg))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _merge_resume(cfg: TrainConfig, given: set[str], ckpt: dict[str, Any], out: Path) -> TrainConfig:
    """The saved config with the few settings a resumed run may change; refuse any other change."""
    saved = TrainConfig.from_dict(ckpt["config"])
    if "model" in given and cfg.model != ckpt["model_name"]:
        raise CnnlabError(
            f"--resume: {out / 'checkpoints' / 'last.pt'} holds model {ckpt['model_name']!r}, "
            f"not {cfg.model!r}; "
            "drop --model or use another --out"
        )
    moved = "dataset" in given and cfg.dataset != saved.dataset
    if moved and not (cfg.dataset.startswith("folder:") and saved.dataset.startswith("folder:")):
        raise CnnlabError(
            f"--resume: the run in {out} trained {ckpt['model_name']} with {ckpt['num_classes']} classes on "
            f"{saved.dataset!r}, not {cfg.dataset!r}; drop --dataset or use another --out"
        )
    changed = [
        f"{_flag(n)} {getattr(cfg, n)!r} (run has {getattr(saved, n)!r})"
        for n in sorted(given - RESUME_MAY_CHANGE - {"out", "overwrite"})
        if getattr(cfg, n) != getattr(saved, n) and n not in ("model", "dataset")
    ]
    if changed:
        raise CnnlabError(
            f"--resume keeps the run's settings, but {', '.join(changed)} differ; drop those flags, "
            "or start a new run with another --out"
        )
    # An image folder that moved is the same data when its content hash says so (`_check_same_data`).
    keep = (given & RESUME_MAY_CHANGE) | recipes.PER_INVOCATION | ({"dataset"} if moved else set())
    merged = dataclasses.replace(saved, **{n: getattr(cfg, n) for n in keep})
    trained = int(ckpt["epoch"]) + (1 if int(ckpt["step"]) else 0)  # a started epoch counts
    if merged.epochs is not None and merged.epochs < trained:
        raise CnnlabError(
            f"--epochs {merged.epochs} is fewer than the {trained} epochs this run has trained"
            f"{' (the last one in part)' if int(ckpt['step']) else ''}; a run cannot be shortened: pass "
            f"--epochs {trained} or more, or start a new run with another --out"
        )
    merged.resume, merged.out = True, str(out)  # the folder may have moved since
    if merged.schedule == "onecycle" and merged.epochs != saved.epochs:
        raise CnnlabError(
            f"--epochs {merged.epochs}: a onecycle schedule is fixed to its {saved.epochs} epochs and cannot "
            "be stretched; start a new run with another --out"
        )
    return merged


def _check_same_data(out: Path, ckpt: dict[str, Any], train_ds: Any, val_ds: Any, moved: bool) -> None:
    """Refuse to resume on data other than the run's: the checkpoint records the training set's identity
    and config.json the validation set's, each with a content hash (`identity()`). --data-dir may change:
    the same files moved elsewhere hash the same. Runs that recorded no hash are not checked."""
    try:
        val_rec = json.loads((out / "config.json").read_text())["data"]["val"]
    except (OSError, ValueError, KeyError, TypeError):
        val_rec = None
    for what, rec, ds in (("training", ckpt.get("dataset"), train_ds), ("validation", val_rec, val_ds)):
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
            if moved:
                raise CnnlabError(
                    f"--resume with --dataset {ds.name!r}: the run in {out} recorded no content hash of its "
                    f"{what} data, so cnnlab cannot tell the moved folder is the same; pass its old --dataset"
                )
            continue
        now = ds.identity()
        if now["sha256"] != rec["sha256"] or now["count"] != rec.get("count"):
            raise CnnlabError(
                f"--resume: the {what} data of {ds.name!r} differs from the data the run in {out} used "
                f"({rec.get('count')} images, content hash {rec['sha256'][:12]} recorded; now "
                f"{now['count']} images, {now['sha256'][:12]}); point --data-dir at the run's data, "
                "or start a new run with another --out"
            )


def _limit(ds: Any, n: int | None, seed: int, shuffle: bool) -> Any:
    if n is None or n >= len(ds):
        return ds
    if shuffle:  # a random subset keeps the class balance of the whole, in expectation
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    else:
        idx = torch.arange(n)
    return ds.subset(idx)


def model_switches(name: str) -> set[str]:
    """The switches model `name` accepts (so a recipe applies only the ones it has)."""
    return set(models.info(name).switches)


class RunSetup:
    """A prepared run and its folder (only rank 0 writes)."""

    def __init__(self, cfg: TrainConfig, given: set[str], ctx: distributed.Context, lock: RunLock) -> None:
        self.ctx = ctx
        self.lock = lock
        recipes.check(cfg)  # the flags as given: refuse impossible values before reading anything
        out = default_out(cfg)
        # A folder that another process is training into is refused first, before anything is read.
        distributed.on_main(ctx, lambda: lock.acquire(out, create=False))
        self.resume_ckpt: dict[str, Any] | None = None
        if cfg.resume:
            path = out / "checkpoints" / "last.pt"
            if not path.is_file():
                why = "; drop --resume to start a new run"
                if (out / "config.json").is_file():
                    why = " (it stopped before its first checkpoint): run the same command without --resume"
                raise CnnlabError(f"nothing to resume in {out}: no checkpoints/last.pt{why}")
            self.resume_ckpt = checkpoint.load(path)
            cfg = _merge_resume(cfg, given, self.resume_ckpt, out)
        t0 = time.perf_counter()
        self.train_ds = _limit(data.load(cfg.dataset, "train", cfg.data_dir), cfg.limit_train, cfg.seed, True)
        self.val_ds = _limit(data.load(cfg.dataset, "val", cfg.data_dir), cfg.limit_val, cfg.seed, False)
        self.classes = list(self.train_ds.classes)
        self.num_classes = len(self.classes)
        self.in_channels = int(getattr(self.train_ds, "channels", 3))
        if self.resume_ckpt is not None and int(self.resume_ckpt["num_classes"]) != self.num_classes:
            raise CnnlabError(
                f"--resume: the checkpoint's {self.resume_ckpt['model_name']} has "
                f"{self.resume_ckpt['num_classes']} classes, data set {cfg.dataset!r} has {self.num_classes}"
            )
        if self.resume_ckpt is not None:
            moved = cfg.dataset != TrainConfig.from_dict(self.resume_ckpt["config"]).dataset
            _check_same_data(out, self.resume_ckpt, self.train_ds, self.val_ds, moved)
        if not cfg.resume:
            size = getattr(self.train_ds, "image_size", (0, 0))
            native = size[0] if size[0] == size[1] else 0
            if cfg.amp and cfg.amp_dtype is None:  # fp16 is the GPUs' fast type; CPUs have bf16 kernels
                cfg = dataclasses.replace(cfg, amp_dtype="fp16" if ctx.device.type == "cuda" else "bf16")
            cfg = recipes.resolve(cfg, native, models.info(cfg.model).input_size, model_switches(cfg.model))
        self.cfg = cfg
        self.dir = Path(str(cfg.out))
        # Refused early, touching nothing; open_folder() looks again under the folder's lock.
        distributed.on_main(ctx, lambda: runfolder.check_dir(self.dir, cfg.resume, cfg.overwrite))
        self.model_options = recipes.model_options(cfg)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and in every rerun
        model = models.create(
            cfg.model, num_classes=self.num_classes, in_channels=self.in_channels, **self.model_options
        )
        check_input = getattr(model, "check_input", None)
        if check_input is not None:  # a too-small --input-size fails now, not at the first step
            side = int(cfg.input_size or 1)
            check_input(torch.empty(1, self.in_channels, side, side, device="meta"))
        if self.resume_ckpt is not None:
            checkpoint.load_weights(model, self.resume_ckpt)
        model = model.to(ctx.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model: nn.Module = model
        if self.resume_ckpt is not None:
            self.stats = data.DataStats.from_dict(self.resume_ckpt["data_stats"])
        else:
            self.stats = data.compute_stats(self.train_ds)
        assert cfg.input_size is not None
        self.aug = data.AugmentConfig(
            input_size=cfg.input_size,
            resize=cfg.resize,
            random_crop=bool(cfg.random_crop),
            pad=cfg.pad or 0,
            flip=bool(cfg.flip),
            pca_std=float(cfg.pca_std or 0.0),
            normalize=str(cfg.normalize),
            pca_scale=str(cfg.pca_scale),
        )
        assert cfg.batch_size is not None
        if cfg.batch_size % ctx.world_size:
            raise CnnlabError(
                f"--batch-size {cfg.batch_size} does not split evenly over {ctx.world_size} "
                "processes; use a multiple of the process count"
            )
        per_rank = cfg.batch_size // ctx.world_size
        common: dict[str, Any] = {
            "aug": self.aug,
            "stats": self.stats,
            "seed": cfg.seed,
            "device": ctx.device,
            "rank": ctx.rank,
            "world_size": ctx.world_size,
            "num_workers": cfg.workers,
        }
        self.train_loader = data.BatchLoader(self.train_ds, per_rank, train=True, **common)
        views = str(cfg.val_views)
        self.val_loader = data.BatchLoader(
            self.val_ds,
            max(1, 2 * per_rank // (10 if views == "tencrop" else 2)),
            train=False,
            views=views,
            **common,
        )
        self.optimizer = recipes.make_optimizer(model, cfg, recipes.RECIPES[cfg.recipe].decay_norm_and_bias)
        assert cfg.epochs is not None
        self.schedule = recipes.Schedule(
            str(cfg.schedule),
            float(cfg.lr or 0),
            cfg.epochs * len(self.train_loader),
            float(cfg.warmup or 0),
            int(cfg.patience or 0),
            int(cfg.max_drops or 0),
        )
        self.history: list[dict[str, Any]] = []
        self.best_err = float("inf")
        self.position: tuple[int, int, dict[str, Any] | None] = (0, 0, None)
        if self.resume_ckpt is not None:
            c = self.resume_ckpt
            self.optimizer.load_state_dict(c["optimizer"])
            self.schedule.load_state_dict(c["scheduler"])
            self.history = [dict(r) for r in c["metrics"]]
            self.best_err = float(c["best_val_top1_err"])
            self.position = (int(c["epoch"]), int(c["step"]), dict(c["partial"]) or None)
        self.already_complete = self.position[0] >= cfg.epochs
        self.setup_seconds = time.perf_counter() - t0
        self.tb: Any = None

    def open_folder(self) -> None:
        """Lock and create (or reopen) the run folder, write config.json and metrics.csv: the first writes
        of a run, made once every setting has been checked."""
        cfg, ctx = self.cfg, self.ctx
        distributed.on_main(
            ctx, lambda: runfolder.prepare_dir(self.dir, cfg.resume, cfg.overwrite, self.lock)
        )
        if ctx.is_main:
            self._write_config()
            report.write_metrics(self.dir / "metrics.csv", self.history)
            self.tb = _tensorboard(self.dir)

    def say(self, text: str) -> None:
        if self.ctx.is_main and self.cfg.progress != "none":
            report.write_or_go_quiet(sys.stdout, text + "\n")

    def checkpoint_base(self) -> dict[str, Any]:
        """The parts of every checkpoint that do not change during the run."""
        return {
            "format": checkpoint.FORMAT,
            "format_version": checkpoint.FORMAT_VERSION,
            "model_name": self.cfg.model,
            "model_options": dict(self.model_options),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "classes": list(self.classes),
            "config": self.cfg.to_dict(),
            "data_stats": self.stats.to_dict(),
            "augment": dataclasses.asdict(self.aug),
            "dataset": self.train_ds.identity(),
            "cnnlab_version": cnnlab.__version__,
            "torch_version": str(torch.__version__),  # TorchVersion would not load with weights_only
        }

    def _write_config(self) -> None:
        n_params = sum(p.numel() for p in self.model.parameters())
        doc = {
            "config": self.cfg.to_dict(),
            "recipe": dataclasses.asdict(recipes.RECIPES[self.cfg.recipe]),
            "model": {
                "name": self.cfg.model,
                "options": self.model_options,
                "num_classes": self.num_classes,
                "in_channels": self.in_channels,
                "parameters": n_params,
            },
            "augment": dataclasses.asdict(self.aug),
            "data": {
                "train": self.train_ds.identity(),
                "val": self.val_ds.identity(),
                "classes": self.classes,
            },
            "distributed": {"world_size": self.ctx.world_size, "device": str(self.ctx.device)},
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cnnlab": cnnlab.__version__,
            },
            "command": sys.argv,
        }
        checkpoint.write_text(self.dir / "config.json", json.dumps(doc, indent=2, default=str) + "\n")

    def epoch_done(self, row: dict[str, Any]) -> None:
        """Write an epoch that is already in `history` (and in the checkpoint) to metrics.csv, TensorBoard."""
        if not self.ctx.is_main:
            return
        report.write_metrics(self.dir / "metrics.csv", self.history)
        if self.tb is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
            self.tb.flush()

    def position_of_last(self) -> tuple[int, int, Any]:
        c = checkpoint.load(self.dir / "checkpoints" / "last.pt")
        return int(c["epoch"]), int(c["step"]), c["partial"]

    def finish(self, stopped: str | None) -> dict[str, Any]:
        """curves.png, then summary.txt last (only for a complete run); the final numbers."""
        final = dict(self.history[-1]) if self.history else {}
        if self.history:
            final["best_val_top1_err"] = min(r["val_top1_err"] for r in self.history)
            final["train_seconds"] = sum(r["epoch_seconds"] for r in self.history)
        if not self.ctx.is_main:
            return final
        if self.tb is not None:
            self.tb.close()
        if self.history:
            report.plot_curves(
                self.history, self.dir / "curves.png", f"{self.cfg.model} on {self.cfg.dataset}"
            )
        if stopped is None and self.history:
            lines = {
                "model": f"{self.cfg.model} ({self.num_classes} classes, {self.in_channels} input channels)",
                "dataset": f"{self.cfg.dataset} ({len(self.train_ds)} train / {len(self.val_ds)} val images)",
                "recipe": f"{self.cfg.recipe} ({self.cfg.epochs} epochs, batch {self.cfg.batch_size}, "
                f"lr {self.cfg.lr}, {self.cfg.schedule})",
                "val views": str(self.cfg.val_views),
                "final val top-1 error": report.pct(final["val_top1_err"]),
                "final val top-5 error": report.pct(final["val_top5_err"]),
                "final val accuracy": f"{100 * (1 - final['val_top1_err']):.2f}%",
                "best val top-1 error": report.pct(final["best_val_top1_err"]),
                "train seconds": f"{final['train_seconds']:.1f}",
                "processes": f"{self.ctx.world_size} on {self.ctx.device}",
            }
            checkpoint.write_text(self.dir / "summary.txt", report.summary_text(lines))
            self.say(
                f"done: val accuracy {lines['final val accuracy']}, top-5 error "
                f"{lines['final val top-5 error']}, {report.format_seconds(final['train_seconds'])} "
                f"of training; results in {self.dir}"
            )
        return final


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder / "tensorboard"))


def prepare(cfg: TrainConfig, given: set[str], ctx: distributed.Context, lock: RunLock) -> RunSetup:
    """The run, checked and built, its folder not yet written (`RunSetup.open_folder`)."""
    return RunSetup(cfg, given, ctx, lock)
