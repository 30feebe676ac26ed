"""Resolving a run's settings (`resolve`: defaults <- recipe <- what the user gave <- derived values), the
learning-rate schedule and the optimiser. The settings and the recipes themselves are in config.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab import argtypes
from cnnlab.device import fast_amp_dtype
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import coerce_switch
from cnnlab.settings import (
    MODEL_SWITCHES,
    RECIPE_TABLE,
    VAL_SPLIT_CAP,
    TrainConfig,
    parse_model_options,
)

# Switches that change a model's state dict (which parameters and buffers it has). A recipe never applies
# them to the torchvision-compatible models (`*_torchvision`), whose point is loading torchvision's weights.
LAYOUT_SWITCHES = frozenset({"batch_norm"})


def keeps_torchvision_layout(model: str) -> bool:
    return model.endswith("_torchvision")


@dataclass(frozen=True)
class Facts:
    """What `resolve` needs to know besides the settings: the data's and the model's."""

    data_side: int  # the training images' side; 0 when sizes vary (image folders)
    train_images: int  # the training set's size after --limit-train (the held-out split comes out of it)
    model_input_size: int  # the model's own input side
    model_switches: dict[str, Any]  # the model's switches and their defaults ({} for a user's network)


def resolve(asked: Mapping[str, Any], facts: Facts, device_type: str) -> TrainConfig:
    """A new run's settings: the defaults, the recipe's over them, what the user gave over those, and
    the values that follow from them and from the data."""
    cfg = TrainConfig().replace(**{**RECIPE_TABLE[asked.get("recipe", "paper")], **asked})
    check_hold(cfg)
    return cfg.replace(**derived(cfg, asked, facts, device_type))


def check_hold(cfg: TrainConfig) -> None:
    """--lr-floor and --hold-epochs shape a onecycle schedule's end, and leave epochs to rise and fall."""
    if (cfg.lr_floor or cfg.hold_epochs) and cfg.schedule != "onecycle":
        raise CnnlabError(
            f"--lr-floor and --hold-epochs shape a onecycle schedule, not {cfg.schedule!r}: add "
            "--schedule onecycle, or drop them"
        )
    if cfg.hold_epochs >= cfg.epochs:
        raise CnnlabError(
            f"--hold-epochs {cfg.hold_epochs} leaves none of the {cfg.epochs} epochs to rise and fall in: "
            f"give fewer than {cfg.epochs}, or more --epochs"
        )


def derived(cfg: TrainConfig, asked: Mapping[str, Any], facts: Facts, device_type: str) -> dict[str, Any]:
    """The settings worked out rather than given: sizes from the data and the model, mixed precision from
    the device, the held-out split's count, the model's switches, the run folder."""
    input_size = cfg.input_size or facts.model_input_size
    resize = cfg.resize
    if "resize" not in asked and not facts.data_side:
        # Image folders (sizes vary): the paper rescales to 256 and crops 224/227 (section 2); other input
        # sizes keep that ratio. In-memory sets of one size are used as they are.
        resize = 256 if input_size in (224, 227) else round(input_size * 256 / 224)
    pad = cfg.pad
    if "pad" not in asked:
        # Images at (or under) the network's size have nothing to crop from: pad them first, by about 1/14 of
        # the side (2 px for 28 px images), the usual small-image translation.
        base = resize or facts.data_side
        pad = max(1, round(base / 14)) if base <= input_size else 0
    amp_dtype = "none"
    if asked.get("amp"):  # fp16 is the GPUs' fast type; CPUs have bf16 kernels
        amp_dtype = asked.get("amp_dtype") or ("fp16" if device_type == "cuda" else "bf16")
    elif cfg.amp and "amp" not in asked:  # the recipe's: only where it is faster, never emulated
        amp_dtype = asked.get("amp_dtype") or fast_amp_dtype(device_type)
    options = model_options(cfg, asked, facts.model_switches)
    return {
        "input_size": input_size,
        "resize": resize,
        "pad": pad,
        # A recipe's Nesterov needs momentum: --momentum 0 alone turns it off rather than failing.
        "nesterov": cfg.nesterov and ("nesterov" in asked or cfg.momentum > 0),
        "amp": amp_dtype != "none",
        "amp_dtype": amp_dtype,
        "val_split": held_out(asked.get("val_split"), cfg.val_split, facts.train_images),
        "model_options": options,
        **{name: options.get(name) for name in MODEL_SWITCHES},
        "out": run_dir_name(cfg),
    }


def model_options(cfg: TrainConfig, asked: Mapping[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Every switch the model is built with: its defaults, then the recipe's (those the model has, and
    none that would change a torchvision-compatible model's state dict), then the flags, typed."""
    given = parse_model_options(asked)
    if not defaults:  # a user's network: its constructor's keyword arguments, as Python literals
        return {k: argtypes.literal(v) for k, v in given.items()}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise CnnlabError(
            f"model {cfg.model} has no switch {', '.join(unknown)}: valid switches are {', '.join(defaults)}"
        )
    keep_layout = keeps_torchvision_layout(cfg.model)
    recipe = {
        k: getattr(cfg, k)
        for k in MODEL_SWITCHES
        if getattr(cfg, k) is not None and k not in given and k in defaults
        and not (keep_layout and k in LAYOUT_SWITCHES)
    }  # fmt: skip
    return {**defaults, **recipe, **{k: coerce_switch(k, v, defaults[k]) for k, v in given.items()}}


def held_out(asked: float | None, recipe: float, train_images: int) -> int:
    """The number of training images --val-split holds out (a count, or a fraction of the training set)."""
    if asked is None:
        return min(round(recipe * train_images), VAL_SPLIT_CAP)
    count = round(asked * train_images) if 0 < asked < 1 else int(asked)
    if asked and not 0 < count < train_images:
        raise CnnlabError(
            f"--val-split {asked:g} holds out {count} of the {train_images} training images, which leaves "
            f"{'nothing to validate on' if count <= 0 else 'nothing to train on'}; give a smaller split, "
            "or 0 to validate on the test set"
        )
    return count


def run_dir_name(cfg: TrainConfig) -> str:
    """--out, or runs/MODEL-DATASET (a folder data set's path flattened into the name; a network from a
    file by its class name)."""
    if cfg.out:
        return cfg.out
    name = cfg.dataset.replace("folder:", "").rstrip("/").replace("/", "_").replace(":", "_").strip("_.")
    model = cfg.model.rpartition(":")[2].replace(".", "_") if ":" in cfg.model else cfg.model
    return f"runs/{model}-{name or 'data'}"


# -- the learning rate -----------------------------------------------------------------------------------


class Schedule:
    """Learning rate per global step. `plateau` also listens to the validation error at each epoch end.

    plateau: lr * 0.1**drops, a drop after `patience` epochs without a lower validation top-1 error, at
    most `max_drops` times (paper section 5). onecycle: a linear rise over the first `warmup` fraction
    of the steps to the peak lr, then a linear fall to `floor` times the peak (zero by default;
    triangular, as in the DAWNBench CIFAR-10 entries), held there for the last `hold_steps` steps; a run
    too short to rise over `min_warmup_steps` steps rises as steeply as that and peaks lower (a
    1,000-image subset gets ~30 steps: a jump to the full peak in 8 of them diverges).
    constant: lr throughout.
    """

    def __init__(
        self, kind: str, lr: float, total_steps: int, warmup: float, patience: int, max_drops: int,
        min_warmup_steps: int = 0, floor: float = 0.0, hold_steps: int = 0,
    ):  # fmt: skip
        self.kind, self.base, self.total = kind, lr, max(total_steps, 1)
        self.warmup, self.patience, self.max_drops = warmup, patience, max_drops
        self.min_warmup_steps, self.floor = min_warmup_steps, floor
        self.fall_end = max(self.total - hold_steps, 1)  # the step the fall reaches the floor
        self.drops, self.bad_epochs, self.best = 0, 0, math.inf

    @classmethod
    def of(cls, cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
        return cls(
            cfg.schedule, cfg.lr, cfg.epochs * steps_per_epoch, cfg.warmup, cfg.patience, cfg.max_drops,
            cfg.min_warmup_steps, cfg.lr_floor, cfg.hold_epochs * steps_per_epoch,
        )  # fmt: skip

    def lr(self, step: int) -> float:
        if self.kind == "plateau":
            return self.base * 0.1**self.drops
        if self.kind == "onecycle":
            peak = self.warmup * self.fall_end
            top = self.base * min(1.0, peak / self.min_warmup_steps) if self.min_warmup_steps else self.base
            t = step + 1
            if t <= peak:
                return top * t / peak
            left = max(self.fall_end - t, 0) / max(self.fall_end - peak, 1)  # 1 at the peak, 0 at the floor
            return top * (self.floor + (1 - self.floor) * left)
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


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; the paper decays every weight, the fast recipe spares biases and norm layers."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay_norm_and_bias:
        groups: list[dict[str, Any]] = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    # fused: one kernel updates every tensor of a group (CPU and CUDA): the demo net's update takes 0.27 ms
    # instead of foreach's 0.72 ms on this 2-core CPU, 2% of its step; elsewhere one launch per group.
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.SGD(
        groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=fused, foreach=not fused
    )
