"""The two recipes, `resolve` (a TrainConfig and the data -> a RunConfig), the schedule, the optimiser.

- `paper`: AlexNet's own recipe (Krizhevsky et al. 2012, sections 4.1 and 5).
- `fast`: the shortest road to high accuracy on small images, in the spirit of airbench and the DAWNBench
  CIFAR-10 entries: batch norm (pooled before it), a one-cycle (triangular) learning rate with Nesterov
  momentum and a minimum warm-up, label smoothing, no weight decay on biases and norm layers, flips, bf16
  where the CPU has bf16 instructions, and test-time averaging over the mirror.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.device import fast_amp_dtype
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import coerce_switch
from cnnlab.training.config import RunConfig, TrainConfig, check, parse_model_options


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_norm_and_bias: bool
    label_smoothing: float
    schedule: str
    warmup: float  # onecycle: fraction of the steps rising to the peak
    min_warmup_steps: int  # onecycle: the rise is never steeper than reaching the peak in this many steps
    patience: int  # plateau: epochs without improvement before lr /= 10
    max_drops: int  # plateau: at most this many divisions
    random_crop: bool
    flip: bool
    pca_std: float
    normalize: str
    val_views: str
    val_split: float  # the fraction of the training set held out for validation (0: validate on the test set)
    channels_last: bool
    amp: bool  # mixed precision where the device has fast kernels for it (`device.fast_amp_dtype`)
    switches: dict[str, Any] = field(default_factory=dict)  # model switches, for models that have them


PAPER = Recipe(
    epochs=90,  # section 5: "roughly 90 cycles through the training set"
    batch_size=128,  # section 5
    lr=0.01,  # section 5: "initialized at 0.01"
    momentum=0.9,  # section 5
    nesterov=False,  # section 5: plain momentum
    weight_decay=5e-4,  # section 5: "weight decay of 0.0005"
    decay_norm_and_bias=True,  # section 5's update decays every weight (Caffe's bvlc_alexnet too)
    label_smoothing=0.0,  # not in the paper (Szegedy et al. 2016)
    schedule="plateau",  # section 5: lr divided by 10 "when the validation error rate stopped improving"
    warmup=0.0,
    min_warmup_steps=0,
    patience=4,  # ours: the paper gives no number, only three drops in ~90 epochs
    max_drops=3,  # section 5: "reduced three times prior to termination"
    random_crop=True,  # section 4.1: random 224x224 patches
    flip=True,  # section 4.1: and their horizontal reflections
    pca_std=0.1,  # section 4.1: alpha ~ N(0, 0.1)
    normalize="pixel",  # section 2: "subtracting the mean activity over the training set from each pixel"
    val_views="center",  # section 4.1 tests on ten patches; one view keeps validation cheap
    # Section 5 drops the lr on the validation error, and section 6 reports the test set apart: 1/6 of the
    # training set (10,000 of Fashion-MNIST's 60,000, the size of its test set), at most VAL_SPLIT_CAP.
    val_split=1 / 6,
    channels_last=False,
    amp=False,  # the paper trained in fp32
)

FAST = Recipe(
    epochs=5,  # Fashion-MNIST, alexnet_fast, bf16: 93.24% (4 epochs: 92.90%, short of 93%; docs/training.md)
    batch_size=128,
    lr=0.15,  # the one-cycle peak
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    decay_norm_and_bias=False,  # decay on biases and norm scales only slows a short run down
    label_smoothing=0.1,
    schedule="onecycle",
    warmup=0.25,
    min_warmup_steps=50,  # small subsets: a gentler, lower peak instead of a jump to 0.15 in a few steps
    patience=2,
    max_drops=2,
    random_crop=False,  # crops slow a two-epoch run down more than they help it
    flip=True,
    pca_std=0.0,
    normalize="channel",
    val_views="flip",  # the image and its mirror, averaged
    # A two-epoch run on a fixed schedule decides nothing on its validation set: it keeps every training
    # image and reports the test set (best.pt is then the last epoch: nothing is chosen on the test set).
    val_split=0.0,
    channels_last=True,  # about 20% faster convolutions on the CPU
    amp=True,  # bf16 on CPUs with bf16 instructions (AVX512-BF16, AMX): ~1.7x faster steps
    # Batch norm in place of LRN; no dropout in a few epochs; pools before the norm and ReLU (cheaper).
    switches={"batch_norm": True, "dropout": 0.0, "pool_early": True},
)

RECIPES: dict[str, Recipe] = {"paper": PAPER, "fast": FAST}

VAL_SPLIT_CAP = 10_000  # a recipe's held-out split never exceeds this many images (ImageNet: 1%)
# Switches that change a model's state dict (which parameters and buffers it has). A recipe never applies
# them to the torchvision-compatible models (`*_torchvision`), whose point is loading torchvision's weights.
LAYOUT_SWITCHES = frozenset({"batch_norm"})


def keeps_torchvision_layout(model: str) -> bool:
    return model.endswith("_torchvision")


@dataclass(frozen=True)
class Facts:
    """What `resolve` needs to know besides the flags: the data's and the model's."""

    data_side: int  # the training images' side; 0 when sizes vary (image folders)
    train_images: int  # the training set's size after --limit-train (the held-out split comes out of it)
    model_input_size: int  # the model's own input side
    model_switches: dict[str, Any]  # the model's switches and their defaults ({} for a user's network)


def resolve(asked: TrainConfig, facts: Facts, device_type: str) -> RunConfig:
    """Fill in everything the user left to the recipe, the model or the data."""
    check(asked)
    r = RECIPES[asked.recipe]

    def pick(name: str) -> Any:
        value = getattr(asked, name)
        return getattr(r, name) if value is None else value

    input_size = asked.input_size or facts.model_input_size
    resize = asked.resize
    data_side = facts.data_side
    if resize is None:
        # Image folders (sizes vary): the paper rescales to 256 and crops 224/227 (section 2); other input
        # sizes keep that ratio. In-memory sets of one size are used as they are.
        resize = 0 if data_side else (256 if input_size in (224, 227) else round(input_size * 256 / 224))
    pad = asked.pad
    if pad is None:
        # Images at (or under) the network's size have nothing to crop from: pad them first, by about 1/14 of
        # the side (2 px for 28 px images), the usual small-image translation.
        base = resize or data_side
        pad = max(1, round(base / 14)) if base <= input_size else 0
    momentum = pick("momentum")
    amp_dtype = "none"
    if asked.amp:  # fp16 is the GPUs' fast type; CPUs have bf16 kernels
        amp_dtype = asked.amp_dtype or ("fp16" if device_type == "cuda" else "bf16")
    elif asked.amp is None and r.amp:  # the recipe's: only where it is faster, never emulated
        amp_dtype = asked.amp_dtype or fast_amp_dtype(device_type)
    return RunConfig(
        model=asked.model,
        dataset=asked.dataset,
        data_dir=asked.data_dir or "",
        skip_bad_images=asked.skip_bad_images,
        recipe=asked.recipe,
        out=run_dir_name(asked),
        model_options=model_options(asked, r, facts.model_switches),
        weights=asked.weights or "",
        weights_sha256="",  # known once the file is read (setup.py)
        freeze=asked.freeze or "",
        epochs=pick("epochs"),
        batch_size=pick("batch_size"),
        lr=pick("lr"),
        momentum=momentum,
        # A recipe's Nesterov needs momentum: --momentum 0 alone turns it off rather than failing.
        nesterov=bool(pick("nesterov")) and (asked.nesterov is not None or momentum > 0),
        weight_decay=pick("weight_decay"),
        decay_norm_and_bias=r.decay_norm_and_bias,
        label_smoothing=pick("label_smoothing"),
        schedule=pick("schedule"),
        warmup=pick("warmup"),
        min_warmup_steps=r.min_warmup_steps,
        patience=pick("patience"),
        max_drops=pick("max_drops"),
        input_size=input_size,
        resize=resize,
        random_crop=pick("random_crop"),
        pad=pad,
        flip=pick("flip"),
        pca_std=pick("pca_std"),
        pca_scale=asked.pca_scale or "std",
        normalize=pick("normalize"),
        val_views=pick("val_views"),
        val_split=held_out(asked.val_split, r.val_split, facts.train_images),
        limit_train=asked.limit_train or 0,
        limit_val=asked.limit_val or 0,
        workers=asked.workers,
        device=asked.device,
        amp_dtype=amp_dtype,
        channels_last=pick("channels_last"),
        compile=asked.compile,
        seed=asked.seed,
        resume=asked.resume,
        overwrite=asked.overwrite,
        stop_after=asked.stop_after or 0,
        progress=asked.progress,
        report=asked.report,
    )


def model_options(asked: TrainConfig, r: Recipe, defaults: dict[str, Any]) -> dict[str, Any]:
    """Every switch the model is built with: its defaults, then the recipe's (those the model has, and
    none that would change a torchvision-compatible model's state dict), then the flags, typed."""
    given = parse_model_options(asked)
    if not defaults:  # a user's network: its constructor's keyword arguments, as Python literals
        return {k: literal(v) for k, v in given.items()}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise CnnlabError(
            f"model {asked.model} has no switch {', '.join(unknown)}: "
            f"valid switches are {', '.join(defaults)}"
        )
    keep_layout = keeps_torchvision_layout(asked.model)
    recipe = {
        k: v for k, v in r.switches.items() if k in defaults and not (keep_layout and k in LAYOUT_SWITCHES)
    }
    return {**defaults, **recipe, **{k: coerce_switch(k, v, defaults[k]) for k, v in given.items()}}


def literal(value: Any) -> Any:
    """A --model-opt value for a user's network: a Python literal (10, 0.5, True, (3, 3)) or the string."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


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


def from_saved(saved: dict[str, Any], model_options: dict[str, Any]) -> RunConfig:
    """The RunConfig a checkpoint recorded. Checkpoints from before RunConfig recorded the TrainConfig fields,
    resolved (None for "no limit"), and the model's switches beside them: both read back the same, and so
    do runs from before a setting existed (they ran without it)."""
    d = dict(saved)
    if "model_options" not in d:  # the earlier layout
        r = RECIPES.get(str(d.get("recipe")), PAPER)
        d.update(
            model_options=dict(model_options),
            decay_norm_and_bias=r.decay_norm_and_bias,
            amp_dtype=(d.get("amp_dtype") or "bf16") if d.get("amp") else "none",
        )
        for name, empty in (("data_dir", ""), ("limit_train", 0), ("limit_val", 0), ("stop_after", 0)):
            d[name] = d.get(name) or empty
        d["resize"] = d.get("resize") or 0
        d.setdefault("skip_bad_images", False)
    # Settings added since: a run that predates them had none of them.
    for name, none in (
        ("weights", ""),
        ("weights_sha256", ""),
        ("freeze", ""),
        ("val_split", 0),
        ("report", False),
    ):
        d.setdefault(name, none)
    try:
        return RunConfig.from_dict(d)
    except TypeError as exc:
        raise CnnlabError(
            f"the checkpoint's config cannot be read ({exc}); it is damaged or too old"
        ) from None


# -- the learning rate -----------------------------------------------------------------------------------


class Schedule:
    """Learning rate per global step. `plateau` also listens to the validation error at each epoch end.

    plateau: lr * 0.1**drops, a drop after `patience` epochs without a lower validation top-1 error, at
    most `max_drops` times (paper section 5). onecycle: a linear rise over the first `warmup` fraction
    of the steps to the peak lr, then a linear fall to zero (triangular, as in the DAWNBench CIFAR-10
    entries); a run too short to rise over `min_warmup_steps` steps rises as steeply as that and peaks
    lower (a 1,000-image subset gets ~30 steps: a jump to the full peak in 8 of them diverges).
    constant: lr throughout.
    """

    def __init__(
        self, kind: str, lr: float, total_steps: int, warmup: float, patience: int, max_drops: int,
        min_warmup_steps: int = 0,
    ):  # fmt: skip
        self.kind, self.base, self.total = kind, lr, max(total_steps, 1)
        self.warmup, self.patience, self.max_drops = warmup, patience, max_drops
        self.min_warmup_steps = min_warmup_steps
        self.drops, self.bad_epochs, self.best = 0, 0, math.inf

    @classmethod
    def of(cls, cfg: RunConfig, steps_per_epoch: int) -> Schedule:
        return cls(
            cfg.schedule, cfg.lr, cfg.epochs * steps_per_epoch, cfg.warmup, cfg.patience, cfg.max_drops,
            cfg.min_warmup_steps,
        )  # fmt: skip

    def lr(self, step: int) -> float:
        if self.kind == "plateau":
            return self.base * 0.1**self.drops
        if self.kind == "onecycle":
            peak = self.warmup * self.total
            top = self.base * min(1.0, peak / self.min_warmup_steps) if self.min_warmup_steps else self.base
            t = step + 1
            if t <= peak:
                return top * t / peak
            return top * max(self.total - t, 0) / max(self.total - peak, 1)
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


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.SGD:
    """SGD with momentum; the paper decays every weight, the fast recipe spares biases and norm layers."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.decay_norm_and_bias:
        groups: list[dict[str, Any]] = [{"params": params, "weight_decay": cfg.weight_decay}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    # foreach=True: one fused kernel launch per group instead of one per tensor.
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, foreach=True)


def recipe_table() -> dict[str, dict[str, Any]]:
    """The recipes as plain dicts (config.json, docs)."""
    return {name: dataclasses.asdict(r) for name, r in RECIPES.items()}
