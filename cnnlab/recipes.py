"""`TrainConfig` (the flags of `cnnlab train`), the two recipes, the learning-rate schedules, the optimiser.

Every optional field left at None takes the recipe's value when the config is resolved; the resolved
config is what `config.json` and every checkpoint record.

- `paper`: AlexNet's own recipe (section 5 of the paper): SGD, batch 128, momentum 0.9, weight decay
  5e-4, lr 0.01 divided by 10 when the validation error stops improving (three times in ~90 epochs),
  random crops, horizontal flips and PCA lighting with std 0.1 (section 4.1).
- `fast`: the shortest road to high accuracy on small images (in the spirit of airbench and the DAWNBench
  CIFAR-10 entries): batch norm, a one-cycle (triangular) learning rate with Nesterov momentum, label
  smoothing 0.1, no weight decay on biases and norm layers, flips and light translations, and test-time
  averaging over the image and its mirror.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError


def _f(default: Any = None, help: str = "", **cli: Any) -> Any:
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """One training run. The field names are the flags of `cnnlab train` (underscores as dashes)."""

    model: str = _f("", "model name (see `cnnlab models`)", required=True)
    dataset: str = _f("", "data set: fashion-mnist, mnist, cifar10, digits or folder:PATH", required=True)
    data_dir: str | None = _f(None, "folder holding the data set's files (default: its usual place)")
    recipe: str = _f(
        "paper",
        "training recipe: paper (AlexNet's) or fast (see docs/training.md)",
        choices=("paper", "fast"),
    )
    out: str | None = _f(None, "run folder (default runs/MODEL-DATASET)")
    resume: bool = _f(False, "continue the run in --out from checkpoints/last.pt")
    overwrite: bool = _f(False, "replace an existing run folder in --out (only one cnnlab wrote)")
    # Optimisation (None: the recipe's value).
    epochs: int | None = _f(None, "number of epochs")
    batch_size: int | None = _f(None, "global batch size (split evenly over distributed ranks)")
    lr: float | None = _f(None, "base (paper) or peak (fast) learning rate")
    momentum: float | None = _f(None, "SGD momentum")
    nesterov: bool | None = _f(None, "Nesterov momentum")
    weight_decay: float | None = _f(None, "L2 weight decay")
    label_smoothing: float | None = _f(None, "label smoothing of the cross-entropy")
    schedule: str | None = _f(None, "learning-rate schedule", choices=("plateau", "onecycle", "constant"))
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
        None,
        "PCA lighting scale per axis: std (sqrt eigenvalue) or eigenvalue",
        choices=("std", "eigenvalue"),
    )
    normalize: str | None = _f(
        None,
        "normalisation: channel mean/std, pixel mean image (paper) or none",
        choices=("channel", "pixel", "none"),
    )
    val_views: str | None = _f(None, "views averaged at validation", choices=("center", "flip", "tencrop"))
    limit_train: int | None = _f(None, "train on a random subset of N images")
    limit_val: int | None = _f(None, "validate on the first N images")
    workers: int = _f(0, "decoding processes for image folders")
    # Speed.
    device: str = _f("auto", "device", choices=("auto", "cpu", "cuda"))
    amp: bool = _f(False, "mixed precision (bf16 on the CPU, fp16 on CUDA unless --amp-dtype)")
    amp_dtype: str | None = _f(None, "mixed precision type", choices=("bf16", "fp16"))
    channels_last: bool | None = _f(None, "channels-last memory format (fast recipe: on)")
    compile: bool = _f(False, "torch.compile the model")
    seed: int = _f(0, "random seed (weights, data order, augmentation, dropout)")
    # Run control.
    stop_after: int | None = _f(None, "stop (checkpoint saved, resumable) after N steps of this invocation")
    progress: str = _f("auto", "progress display", choices=("auto", "bar", "lines", "none"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Settings of one invocation, never inherited by a resumed run; and the settings a resume may change
# (taken from the run's checkpoint unless given). Every other setting comes from the checkpoint.
PER_INVOCATION = frozenset({"device", "stop_after", "progress", "workers", "resume"})
RESUME_MAY_CHANGE = PER_INVOCATION | {"epochs", "data_dir"}
MODEL_SWITCHES = ("activation", "lrn", "overlap_pool", "dropout", "init", "batch_norm")


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    label_smoothing: float
    schedule: str
    warmup: float
    patience: int
    max_drops: int
    random_crop: bool
    flip: bool
    pca_std: float
    val_views: str
    decay_norm_and_bias: bool
    channels_last: bool
    switches: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    # Section 5 of the paper; patience is ours (the paper divides "when the validation error rate
    # stopped improving", three times in ~90 epochs). Caffe's bvlc_alexnet also decays all weights.
    "paper": Recipe(
        epochs=90,
        batch_size=128,
        lr=0.01,
        momentum=0.9,
        nesterov=False,
        weight_decay=5e-4,
        label_smoothing=0.0,
        schedule="plateau",
        warmup=0.0,
        patience=4,
        max_drops=3,
        random_crop=True,
        flip=True,
        pca_std=0.1,
        val_views="center",
        decay_norm_and_bias=True,
        channels_last=False,
    ),
    # Tuned on Fashion-MNIST with alexnet_small on a 2-core CPU (docs/training.md has the numbers): two
    # epochs fit the 5-minute budget there; no dropout and no random crops (both slow a short run down
    # more than they help it), batch norm instead of LRN, channels-last (about 20% faster convolutions).
    "fast": Recipe(
        epochs=2,
        batch_size=128,
        lr=0.15,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        label_smoothing=0.1,
        schedule="onecycle",
        warmup=0.25,
        patience=2,
        max_drops=2,
        random_crop=False,
        flip=True,
        pca_std=0.0,
        val_views="flip",
        decay_norm_and_bias=False,
        channels_last=True,
        switches={"batch_norm": True, "dropout": 0.0},
    ),
}


# The TrainConfig fields a recipe fills when the user leaves them unset.
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name in _CONFIG_FIELDS)


def resolve(cfg: TrainConfig, native: int, model_input_size: int, model_switches: set[str]) -> TrainConfig:
    """Fill every None the recipe decides; `native` is the data's image side (0 when it varies)."""
    r = RECIPES[cfg.recipe]
    out = dataclasses.replace(cfg)
    for name in RECIPE_FIELDS:
        if getattr(out, name) is None:
            setattr(out, name, getattr(r, name))
    for name, value in r.switches.items():
        # A recipe's model switch applies only to models that have it.
        if getattr(out, name) is None and name in model_switches:
            setattr(out, name, value)
    if out.input_size is None:
        out.input_size = model_input_size
    if out.resize is None and not native:
        # Image folders (sizes vary): the paper rescales to 256 and crops 224/227 (section 2); other input
        # sizes keep that ratio.
        out.resize = 256 if out.input_size in (224, 227) else round(out.input_size * 256 / 224)
    if out.pad is None:
        # Images at (or under) the network's size have nothing to crop from: pad them first, by about
        # 1/14 of the side (2 px for 28 px images), the usual small-image translation.
        base = out.resize or native
        out.pad = max(1, round(base / 14)) if base <= out.input_size else 0
    if out.normalize is None:
        out.normalize = "channel"
    if out.pca_scale is None:
        out.pca_scale = "std"
    if out.out is None:
        out.out = resolve_out(out)
    check(out)
    return out


def resolve_out(cfg: TrainConfig) -> str:
    """--out, or runs/MODEL-DATASET (a folder data set's path flattened into the name)."""
    if cfg.out:
        return cfg.out
    name = cfg.dataset.replace("folder:", "").rstrip("/").replace("/", "_").replace(":", "_").strip("_.")
    return f"runs/{cfg.model}-{name or 'data'}"


def model_options(cfg: TrainConfig) -> dict[str, Any]:
    """The switches to build the model with: the named flags that are set, then --model-opt KEY=VALUE."""
    options: dict[str, Any] = {n: getattr(cfg, n) for n in MODEL_SWITCHES if getattr(cfg, n) is not None}
    for item in cfg.model_opt or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CnnlabError(f"--model-opt {item!r} is not KEY=VALUE (e.g. --model-opt width=0.5)")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def check(cfg: TrainConfig) -> None:
    """Refuse impossible settings with a CnnlabError before any data is read or folder written.

    None means "the recipe's value" and passes; the checks run on the flags as given and again on the
    resolved config.
    """

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    positive = ("epochs", "batch_size", "input_size", "limit_train", "limit_val", "stop_after", "resize")
    for name in (*positive, "patience"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise CnnlabError(f"{flag(name)} must be positive, got {value}")
    for name in ("pad", "max_drops", "workers"):
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
    for name in ("weight_decay", "pca_std"):
        value = getattr(cfg, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise CnnlabError(f"{flag(name)} must be a number >= 0, got {value}")
    if cfg.nesterov and cfg.momentum == 0:
        raise CnnlabError("--nesterov needs a momentum above 0; pass --momentum or --no-nesterov")
    if not -(2**63) <= cfg.seed < 2**64:
        raise CnnlabError(f"--seed must fit in 64 bits, got {cfg.seed}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay None so a resumed run can tell what was given."""
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
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
            if f.default is False:
                kwargs["action"] = "store_true"
            else:
                kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = int if "int" in kind else float if "float" in kind else str
            if f.default not in (None, ""):
                kwargs["help"] = f"{kwargs['help']} (default {f.default})"
        parser.add_argument(flag, **kwargs)


def from_args(ns: argparse.Namespace) -> tuple[TrainConfig, set[str]]:
    """The config the flags describe, and the names of the flags the user actually gave."""
    given = {f.name for f in dataclasses.fields(TrainConfig) if getattr(ns, f.name, None) is not None}
    values = {name: getattr(ns, name) for name in given}
    return TrainConfig(**values), given


class Schedule:
    """Learning rate per global step. `plateau` also listens to the validation error at each epoch end.

    plateau: lr * 0.1**drops, a drop after `patience` epochs without a lower validation top-1 error, at
    most `max_drops` times (paper section 5). onecycle: a linear rise over the first `warmup` fraction
    of the steps to the peak lr, then a linear fall to zero (triangular, as in the DAWNBench CIFAR-10
    entries). constant: lr throughout.
    """

    def __init__(self, kind: str, lr: float, total_steps: int, warmup: float, patience: int, max_drops: int):
        self.kind, self.base, self.total = kind, lr, max(total_steps, 1)
        self.warmup, self.patience, self.max_drops = warmup, patience, max_drops
        self.drops, self.bad_epochs, self.best = 0, 0, math.inf

    def lr(self, step: int) -> float:
        if self.kind == "plateau":
            return self.base * 0.1**self.drops
        if self.kind == "onecycle":
            peak = self.warmup * self.total
            t = step + 1
            if t <= peak:
                return self.base * t / peak
            return self.base * max(self.total - t, 0) / max(self.total - peak, 1)
        return self.base

    def end_epoch(self, val_err: float) -> bool:
        """Feed an epoch's validation error; True when the learning rate just dropped."""
        if self.kind != "plateau":
            return False
        if val_err < self.best:
            self.best, self.bad_epochs = val_err, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.drops < self.max_drops:
            self.drops, self.bad_epochs = self.drops + 1, 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "drops": self.drops,
            "bad_epochs": self.bad_epochs,
            "best": self.best,
            "total": self.total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drops, self.bad_epochs = int(state["drops"]), int(state["bad_epochs"])
        self.best = float(state["best"])


def make_optimizer(model: nn.Module, cfg: TrainConfig, decay_norm_and_bias: bool) -> torch.optim.SGD:
    """SGD with momentum; the paper decays every weight, the fast recipe spares biases and norm layers."""
    assert cfg.lr is not None and cfg.momentum is not None and cfg.weight_decay is not None
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norm_and_bias:
        groups: list[dict[str, Any]] = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    # foreach=True: one fused kernel launch per group instead of one per tensor.
    return torch.optim.SGD(
        groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=bool(cfg.nesterov), foreach=True
    )
