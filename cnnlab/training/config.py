"""What `cnnlab train` is asked (`TrainConfig`, one field per flag) and what a run is (`RunConfig`).

A `TrainConfig` holds what the user gave: None means "the recipe's value" (or the model's). `recipes.resolve`
turns it into a `RunConfig`, frozen and fully typed, with every value a recipe or the data decides filled
in. Nothing after that reads the recipe table again: the loop, the optimiser, the loaders and config.json
all read the RunConfig.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from cnnlab.choices import DEVICES, NORMALIZATIONS, PCA_SCALES, PROGRESS, RECIPES, SCHEDULES, VIEWS
from cnnlab.errors import CnnlabError


def flag(name: str) -> str:
    """The command-line flag of a config field: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def _f(default: Any = None, help: str = "", **cli: Any) -> Any:
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """What `cnnlab train` was asked. The field names are its flags (underscores as dashes)."""

    model: str = _f(
        "",
        "model name (see `cnnlab models`), or your own network: path/to/file.py:Class or package.module:attr "
        "(importing it runs that file's code; its constructor's arguments as --model-opt KEY=VALUE)",
    )
    dataset: str = _f("", "data set: fashion-mnist, mnist, cifar10, digits or folder:PATH")
    data_dir: str | None = _f(None, "folder holding the data set's files (default: its usual place)")
    download: bool = _f(False, "fetch a missing data set through torchvision (needs a network)")
    skip_bad_images: bool = _f(False, "folder data sets: skip unreadable image files instead of stopping")
    recipe: str = _f("paper", "training recipe: paper (AlexNet's) or fast", choices=RECIPES)
    out: str | None = _f(None, "run folder (default runs/MODEL-DATASET)")
    resume: bool = _f(False, "continue the run in --out from checkpoints/last.pt")
    overwrite: bool = _f(False, "replace the run in --out (a folder cnnlab made, holding only its files)")
    # Fine-tuning.
    weights: str | None = _f(
        None,
        "start from these weights: a torchvision .pth state dict, a .safetensors file or a cnnlab checkpoint",
    )
    freeze: str | None = _f(
        None, "keep layers fixed: conv1-conv5, convN, a module name (features), comma-separated"
    )
    # Optimisation (None: the recipe's value).
    epochs: int | None = _f(None, "number of epochs")
    batch_size: int | None = _f(None, "global batch size (split evenly over distributed ranks)")
    lr: float | None = _f(None, "base (paper) or peak (fast) learning rate")
    momentum: float | None = _f(None, "SGD momentum")
    nesterov: bool | None = _f(None, "Nesterov momentum")
    weight_decay: float | None = _f(None, "L2 weight decay")
    label_smoothing: float | None = _f(None, "label smoothing of the cross-entropy")
    schedule: str | None = _f(None, "learning-rate schedule", choices=SCHEDULES)
    warmup: float | None = _f(None, "onecycle: fraction of the steps spent rising to the peak lr")
    patience: int | None = _f(None, "plateau: epochs without a lower val error before lr /= 10")
    max_drops: int | None = _f(None, "plateau: how many times lr may be divided by 10")
    # Model switches (None: the model's default, or the recipe's where it has one).
    activation: str | None = _f(None, "activation: relu, tanh, sigmoid, leaky_relu, elu, selu")
    lrn: bool | None = _f(None, "local response normalisation layers")
    overlap_pool: bool | None = _f(None, "overlapping (3x3 stride 2) instead of 2x2 pooling")
    dropout: float | None = _f(None, "dropout rate of the fully connected layers")
    init: str | None = _f(None, "weight init scheme (e.g. paper, kaiming)")
    batch_norm: bool | None = _f(None, "batch-norm variant of the model")
    model_opt: list[str] | None = _f(  # noqa: RUF009 (a field() wrapper, like the others)
        None,
        "any other model switch as KEY=VALUE (repeatable), e.g. width=0.5",
        action="append",
        metavar="KEY=VALUE",
    )
    # Augmentation (None: the recipe's value).
    input_size: int | None = _f(None, "side of the network input (default: the model's)")
    resize: int | None = _f(None, "resize the shorter side to this before cropping (e.g. 256)")
    random_crop: bool | None = _f(None, "random crops for training (else centre crops)")
    pad: int | None = _f(None, "zero padding before random crops (small images)")
    flip: bool | None = _f(None, "random horizontal flips")
    pca_std: float | None = _f(None, "PCA lighting std (paper: 0.1; 0 turns it off)")
    pca_scale: str | None = _f(
        None, "PCA lighting scale per axis: std (sqrt eigenvalue) or eigenvalue", choices=PCA_SCALES
    )
    normalize: str | None = _f(
        None, "normalisation: channel mean/std, pixel mean image (paper) or none", choices=NORMALIZATIONS
    )
    val_views: str | None = _f(None, "views averaged at validation", choices=VIEWS)
    val_split: float | None = _f(
        None,
        "hold N images (or a fraction in (0, 1)) of the training set out to choose best.pt and drop the lr "
        "on; 0: validate on the test set (paper recipe: 1/6, at most 10000; fast: 0)",
    )
    limit_train: int | None = _f(
        None, "use a random subset of N training images (the --val-split comes out of them)"
    )
    limit_val: int | None = _f(None, "evaluate on the first N images of the test set")
    workers: int = _f(0, "decoding processes for image folders")
    # Speed.
    device: str = _f("auto", "device", choices=DEVICES)
    amp: bool | None = _f(
        None, "mixed precision (bf16 on the CPU, fp16 on CUDA unless --amp-dtype; fast recipe: on where fast)"
    )
    amp_dtype: str | None = _f(None, "mixed precision type", choices=("bf16", "fp16"))
    channels_last: bool | None = _f(None, "channels-last memory format (fast recipe: on)")
    compile: bool = _f(False, "torch.compile the model")
    seed: int = _f(0, "random seed (weights, data order, augmentation, dropout)")
    # Run control.
    stop_after: int | None = _f(None, "stop (checkpoint saved, resumable) after N steps of this invocation")
    progress: str = _f("auto", "progress display", choices=PROGRESS)
    report: bool = _f(True, "write report.html, the whole run on one page, when the run finishes")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# The model switches with flags of their own; anything else goes through --model-opt KEY=VALUE.
MODEL_SWITCHES = ("activation", "lrn", "overlap_pool", "dropout", "init", "batch_norm")
# Settings of one invocation, never inherited by a resumed run; and what a resume may change besides
# (taken from the run's checkpoint unless given). Every other setting comes from the checkpoint.
PER_INVOCATION = frozenset(
    {"device", "stop_after", "progress", "workers", "resume", "overwrite", "out", "download"}
)
RESUME_MAY_CHANGE = PER_INVOCATION | {"epochs", "data_dir", "skip_bad_images", "report"}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one training run, resolved: what config.json and every checkpoint record.

    No field is None: "no limit" is 0 (limit_train, limit_val, stop_after), "no resize" is 0, "no held-out
    split" is 0 (val_split), "the data set's usual place" is "" (data_dir), "no weights file" and "nothing
    frozen" are "" (weights, weights_sha256, freeze), and "no mixed precision" is amp_dtype "none".
    """

    model: str
    dataset: str
    data_dir: str
    skip_bad_images: bool
    recipe: str
    out: str
    model_options: dict[
        str, Any
    ]  # every switch the model is built with: its defaults, the recipe's, the flags
    weights: str  # the file the run started from ("" none)
    weights_sha256: str  # its digest ("" none)
    freeze: str  # the layers kept fixed ("" none)
    # Optimisation.
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_norm_and_bias: bool
    label_smoothing: float
    schedule: str
    warmup: float
    patience: int
    max_drops: int
    # Data and augmentation.
    input_size: int
    resize: int
    random_crop: bool
    pad: int
    flip: bool
    pca_std: float
    pca_scale: str
    normalize: str
    val_views: str
    val_split: int  # images held out of the training set for validation; 0: validation is the test set
    limit_train: int
    limit_val: int
    workers: int
    # Speed.
    device: str
    amp_dtype: str  # "none", "bf16" or "fp16"
    channels_last: bool
    compile: bool
    seed: int
    # This invocation.
    resume: bool
    overwrite: bool
    stop_after: int
    progress: str
    report: bool
    # Added later, with the value that earlier runs had.
    min_warmup_steps: int = 0  # onecycle: the rise is never steeper than reaching the peak in this many

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """A saved RunConfig; a KeyError or TypeError means it was not one (see `recipes.from_saved`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


# -- checks ----------------------------------------------------------------------------------------------


def check(cfg: TrainConfig) -> None:
    """Refuse impossible values of the flags as given, before any data is read or folder written.

    None means "the recipe's value" and passes (the recipes' own values are right by construction).
    """
    from cnnlab.data.augment import check_ranges  # imported here: argument parsing needs no torch

    check_ranges(
        input_size=cfg.input_size, resize=cfg.resize, pad=cfg.pad, pca_std=cfg.pca_std,
        normalize=cfg.normalize, pca_scale=cfg.pca_scale,
    )  # fmt: skip
    for name in ("epochs", "batch_size", "limit_train", "limit_val", "stop_after", "patience"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise CnnlabError(f"{flag(name)} must be positive, got {value}")
    for name in ("max_drops", "workers"):
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise CnnlabError(f"{flag(name)} must be 0 or more, got {value}")
    if cfg.lr is not None and not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise CnnlabError(f"--lr must be a positive number, got {cfg.lr}")
    # `not 0 <= x < 1` is also true for NaN, so these refuse it too.
    fractions = (
        ("warmup", "a fraction of the run"),
        ("label_smoothing", "a fraction"),
        ("momentum", "a fraction (the paper's is 0.9)"),
    )
    for name, what in fractions:
        value = getattr(cfg, name)
        if value is not None and not 0 <= value < 1:
            raise CnnlabError(f"{flag(name)} is {what} in [0, 1), got {value}")
    if cfg.weight_decay is not None and not (cfg.weight_decay >= 0 and math.isfinite(cfg.weight_decay)):
        raise CnnlabError(f"--weight-decay must be a number >= 0, got {cfg.weight_decay}")
    if cfg.nesterov and cfg.momentum == 0:
        raise CnnlabError("--nesterov needs a momentum above 0; pass --momentum or --no-nesterov")
    if cfg.val_split is not None:
        n = cfg.val_split
        if not (math.isfinite(n) and (n == 0 or 0 < n < 1 or (n >= 1 and n == int(n)))):
            raise CnnlabError(
                f"--val-split is a number of images (e.g. 10000), a fraction in (0, 1) (e.g. 0.1) "
                f"or 0, got {n}"
            )
    if cfg.freeze is not None and not cfg.freeze.strip(" ,"):  # '' froze nothing, silently
        raise CnnlabError(f"--freeze {cfg.freeze!r} names no layer; give e.g. conv1-conv5, or leave it out")
    if not -(2**63) <= cfg.seed < 2**64:
        raise CnnlabError(f"--seed must fit in 64 bits, got {cfg.seed}")


def parse_model_options(cfg: TrainConfig) -> dict[str, Any]:
    """The switches to build the model with: the named flags that are set, then --model-opt KEY=VALUE."""
    options: dict[str, Any] = {n: getattr(cfg, n) for n in MODEL_SWITCHES if getattr(cfg, n) is not None}
    for item in cfg.model_opt or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CnnlabError(f"--model-opt {item!r} is not KEY=VALUE (e.g. --model-opt width=0.5)")
        name = key.strip().replace("-", "_")
        if name in MODEL_SWITCHES and getattr(cfg, name) is not None:  # one setting, given two ways
            given = getattr(cfg, name)
            named = (
                (flag(name) if given else "--no-" + flag(name)[2:])
                if isinstance(given, bool)
                else (f"{flag(name)} {given}")
            )
            raise CnnlabError(f"{named} and --model-opt {item.strip()} both set {name}; give it once")
        options[name] = value.strip()
    return options


# -- the command line ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay None so a resumed run can tell what was given."""
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata)
        kind = str(f.type)
        kwargs: dict[str, Any] = {"help": meta.get("help"), "default": None, "dest": f.name}
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if f.name in ("model", "dataset"):
            kwargs["metavar"] = "NAME"
        if meta.get("action") == "append":
            kwargs.update(action="append", metavar=meta["metavar"])
        elif "bool" in kind:
            kwargs["action"] = "store_true" if f.default is False else argparse.BooleanOptionalAction
        else:
            kwargs["type"] = int if "int" in kind else float if "float" in kind else str
            if f.default not in (None, ""):
                kwargs["help"] = f"{kwargs['help']} (default {f.default})"
        parser.add_argument(flag(f.name), **kwargs)


def from_args(ns: argparse.Namespace) -> tuple[TrainConfig, set[str]]:
    """The config the flags describe, and the names of the flags the user actually gave."""
    given = {f.name for f in dataclasses.fields(TrainConfig) if getattr(ns, f.name, None) is not None}
    return TrainConfig(**{name: getattr(ns, name) for name in given}), given


def given_fields(cfg: TrainConfig) -> set[str]:
    """From Python: every field that differs from TrainConfig's default counts as given."""
    default = TrainConfig()
    return {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}
