"""Every setting of a training run, declared once: `TrainConfig`, and the recipes.

Each field carries its type, its default (the paper's value, with the section it comes from), its help
text and how a flag's text is checked; `cnnlab train`'s flags are generated from it (`add_arguments`),
a recipe is a plain mapping of overrides onto it (`RECIPE_TABLE`), and a resolved run is one
(`recipes.resolve`: defaults <- recipe <- what the user gave <- derived values). config.json and every
checkpoint hold it whole.

What the user gave is kept apart as a plain mapping ("asked", field name -> value): the recipe fills only
what was not asked, and a resumed run refuses to change what was. Torch-free: argument parsing imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnlab import argtypes
from cnnlab.choices import DEVICES, NORMALIZATIONS, PCA_SCALES, PROGRESS, RECIPES, SCHEDULES, VIEWS
from cnnlab.errors import CnnlabError


def _f(
    default: Any,
    help: str,
    *,
    section: str = "",
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] = (),
    derived: bool = False,
    flag: bool = True,
) -> Any:
    """A setting: its default, help text, the paper's section for the default, how a flag's text is read
    (an argtypes function, or one of `choices`); `derived`: the default is worked out by `resolve` when not
    given (shown as such in --help); `flag=False`: set by `resolve` alone, never on the command line."""
    meta = {
        "help": help,
        "section": section,
        "parse": parse,
        "choices": choices,
        "derived": derived,
        "flag": flag,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run. The defaults are the paper's recipe (Krizhevsky et al. 2012);
    the field names are the flags (underscores as dashes). 0 or "" means "none" (no limit, no weights file,
    nothing frozen, the data set's usual place); None for a model switch means "the model's own"."""

    # -- the run
    model: str = _f(
        "",
        "model name (see `cnnlab models`), or your own network: path/to/file.py:Class or package.module:attr "
        "(importing it runs that file's code; its constructor's arguments as --model-opt KEY=VALUE)",
    )
    dataset: str = _f("", "data set: fashion-mnist, mnist, cifar10, digits or folder:PATH")
    data_dir: str = _f("", "folder holding the data set's files (default: its usual place)")
    download: bool = _f(False, "fetch a missing data set through torchvision (needs a network)")
    skip_bad_images: bool = _f(False, "folder data sets: skip unreadable image files instead of stopping")
    recipe: str = _f("paper", "training recipe: paper (AlexNet's) or fast", choices=RECIPES)
    out: str = _f("", "run folder (default runs/MODEL-DATASET)", derived=True)
    resume: bool = _f(False, "continue the run in --out from checkpoints/last.pt")
    overwrite: bool = _f(False, "replace the run in --out (a folder cnnlab made, holding only its files)")
    # -- fine-tuning
    weights: str = _f(
        "",
        "start from these weights: a torchvision .pth state dict, a .safetensors file or a cnnlab checkpoint",
    )
    weights_sha256: str = _f("", "the --weights file's digest", derived=True, flag=False)
    freeze: str = _f(
        "", "keep layers fixed: conv1-conv5, convN, a module name (features), comma-separated",
        parse=argtypes.layer_names,
    )  # fmt: skip
    # -- optimisation
    epochs: int = _f(90, "number of epochs", section="5", parse=argtypes.positive)
    batch_size: int = _f(
        128, "global batch size (split evenly over distributed ranks)", section="5", parse=argtypes.positive
    )
    lr: float = _f(
        0.01, "base (paper) or peak (fast) learning rate", section="5", parse=argtypes.positive_number
    )
    momentum: float = _f(0.9, "SGD momentum", section="5", parse=argtypes.fraction)
    nesterov: bool = _f(False, "Nesterov momentum (needs a momentum above 0)", section="5: plain momentum")
    weight_decay: float = _f(5e-4, "L2 weight decay", section="5", parse=argtypes.non_negative_number)
    decay_norm_and_bias: bool = _f(
        True, "weight decay on biases and norm layers too", section="5 decays every weight"
    )
    label_smoothing: float = _f(
        0.0, "label smoothing of the cross-entropy (Szegedy et al. 2016)", parse=argtypes.fraction
    )
    schedule: str = _f(
        "plateau", "learning-rate schedule (plateau: lr / 10 when the validation error stops improving)",
        section="5", choices=SCHEDULES,
    )  # fmt: skip
    warmup: float = _f(
        0.0, "onecycle: fraction of the steps (before --hold-epochs) spent rising to the peak lr",
        parse=argtypes.fraction,
    )  # fmt: skip
    min_warmup_steps: int = _f(
        0, "onecycle: the rise is never steeper than reaching the peak in this many steps",
        parse=argtypes.non_negative,
    )  # fmt: skip
    # The paper's stopping rule at the end of a onecycle run (section 5: until "the validation error rate
    # stopped improving with the current learning rate"): the fall ends at a floor, held for the last epochs.
    lr_floor: float = _f(
        0.0, "onecycle: the lr the fall ends at, as a fraction of the peak", parse=argtypes.fraction
    )
    hold_epochs: int = _f(
        0, "onecycle: the last epochs, trained at the floor lr (to see whether the error still falls)",
        parse=argtypes.non_negative,
    )  # fmt: skip
    # The paper gives no patience, only three drops in ~90 epochs: 4 is ours.
    patience: int = _f(
        4, "plateau: epochs without a lower val error before lr /= 10", parse=argtypes.positive
    )
    max_drops: int = _f(
        3, "plateau: how many times lr may be divided by 10", section="5", parse=argtypes.non_negative
    )
    # -- model switches (None: the model's own; anything else through --model-opt KEY=VALUE)
    activation: str | None = _f(None, "activation: relu, tanh, sigmoid, leaky_relu, elu, selu")
    lrn: bool | None = _f(None, "local response normalisation layers", section="3.3")
    overlap_pool: bool | None = _f(None, "overlapping (3x3 stride 2) instead of 2x2 pooling", section="3.4")
    dropout: float | None = _f(None, "dropout rate of the fully connected layers", section="4.2")
    init: str | None = _f(None, "weight init scheme (e.g. paper, kaiming)", section="5")
    batch_norm: bool | None = _f(None, "batch-norm variant of the model")
    pool_early: bool | None = _f(None, "each pool straight after its conv (cheaper; same weights)")
    model_opt: list[str] = _f(  # noqa: RUF009 (a field() with a default_factory, like the others)
        [], "any other model switch as KEY=VALUE (repeatable), e.g. width=0.5", parse=argtypes.key_value
    )
    model_options: dict[str, Any] = _f(  # noqa: RUF009 (a field() with a default_factory, like the others)
        {}, "every switch the model is built with: its defaults, the recipe's, the flags", flag=False
    )
    # -- data and augmentation
    input_size: int = _f(
        0, "side of the network input (default: the model's)", derived=True, parse=argtypes.positive
    )
    resize: int = _f(
        0,
        "resize the shorter side to this before cropping (default: image folders 256 for a 224 input, as "
        "in section 2, in proportion for others; images of one size as they are)",
        derived=True, parse=argtypes.positive,
    )  # fmt: skip
    random_crop: bool = _f(True, "random crops for training (else centre crops)", section="4.1")
    pad: int = _f(
        0, "zero padding before random crops (default: about 1/14 of the side for images no larger than the "
        "input)", derived=True, parse=argtypes.non_negative,
    )  # fmt: skip
    flip: bool = _f(True, "random horizontal flips", section="4.1")
    pca_std: float = _f(
        0.1, "PCA lighting std (0 turns it off)", section="4.1", parse=argtypes.non_negative_number
    )
    pca_scale: str = _f(
        "std", "PCA lighting scale per axis: std (sqrt eigenvalue) or eigenvalue", choices=PCA_SCALES
    )
    normalize: str = _f(
        "pixel", "normalisation: channel mean/std, pixel mean image (paper) or none", section="2",
        choices=NORMALIZATIONS,
    )  # fmt: skip
    # Section 4.1 tests on ten patches; one view keeps validation cheap.
    val_views: str = _f("center", "views averaged at validation", choices=VIEWS)
    # `cnnlab reproduce` reads a run's test numbers at its last epoch only: scoring the test set after every
    # epoch would cost it about a fifth of its time.
    test_each_epoch: bool = _f(
        True, "score the test set after every epoch (with a held-out split; else after the last one only)"
    )
    # Section 5 drops the lr on the validation error and section 6 reports the test set apart: 1/6 of the
    # training set (10,000 of Fashion-MNIST's 60,000, the size of its test set), at most VAL_SPLIT_CAP.
    val_split: float = _f(
        1 / 6,
        "hold N images (or a fraction in (0, 1)) of the training set out to choose best.pt and drop the lr "
        "on; 0: validate on the test set (default 1/6 of the training set, at most 10,000, section 5; "
        "resolved: the number of images)",
        section="5", parse=argtypes.count_or_fraction, derived=True,
    )  # fmt: skip
    limit_train: int = _f(
        0,
        "use a random subset of N training images (the --val-split comes out of them)",
        parse=argtypes.positive,
    )
    limit_val: int = _f(0, "evaluate on the first N images of the test set", parse=argtypes.positive)
    workers: int = _f(0, "decoding processes for image folders", parse=argtypes.non_negative)
    # -- speed
    device: str = _f("auto", "device", choices=DEVICES)
    amp: bool = _f(False, "mixed precision (bf16 on the CPU, fp16 on CUDA unless --amp-dtype)")
    amp_dtype: str = _f(
        "none", "mixed precision type (resolved: none, bf16 or fp16)", derived=True, choices=("bf16", "fp16")
    )
    channels_last: bool = _f(False, "channels-last memory format")
    compile: bool = _f(False, "torch.compile the model")
    seed: int = _f(0, "random seed (weights, data order, augmentation, dropout)", parse=argtypes.seed)
    # -- run control
    stop_after: int = _f(
        0, "stop (checkpoint saved, resumable) after N steps of this invocation", parse=argtypes.positive
    )
    progress: str = _f("auto", "progress display", choices=PROGRESS)
    report: bool = _f(True, "write report.html, the whole run on one page, when the run finishes")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], what: str) -> TrainConfig:
        """A saved config (a checkpoint's, config.json's); anything but this cnnlab's layout is refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, Mapping) or set(d) != names:
            raise CnnlabError(f"{what} holds no config of this cnnlab's layout; train the run again")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# The recipes: overrides of the defaults (the paper's recipe). `fast`: the shortest road to high accuracy on
# small images, in the spirit of airbench and the DAWNBench CIFAR-10 entries.
PAPER: dict[str, Any] = {}  # the defaults are the paper's recipe
FAST: dict[str, Any] = {
    "epochs": 5,  # Fashion-MNIST, alexnet_fast, bf16: 93.24% (4 epochs: 92.90%, short of 93%; training.md)
    "lr": 0.15,  # the one-cycle peak
    "nesterov": True,
    "decay_norm_and_bias": False,  # decay on biases and norm scales only slows a short run down
    "label_smoothing": 0.1,
    "schedule": "onecycle",
    "warmup": 0.25,
    "min_warmup_steps": 50,  # small subsets: a gentler, lower peak instead of a jump to 0.15 in a few steps
    "patience": 2,
    "max_drops": 2,
    "random_crop": False,  # crops slow a two-epoch run down more than they help it
    "pca_std": 0.0,
    "normalize": "channel",
    "val_views": "flip",  # the image and its mirror, averaged
    # A few epochs on a fixed schedule decide nothing on a validation set: every training image is kept and
    # the test set reported (best.pt is then the last epoch: nothing is chosen on the test set).
    "val_split": 0.0,
    "channels_last": True,  # about 20% faster convolutions on the CPU
    "amp": True,  # where the device has fast kernels for it (`device.fast_amp_dtype`): ~1.7x faster steps
    # Batch norm in place of LRN; no dropout in a few epochs; pools before the norm and ReLU (cheaper).
    "batch_norm": True,
    "dropout": 0.0,
    "pool_early": True,
}
RECIPE_TABLE: dict[str, dict[str, Any]] = {"paper": PAPER, "fast": FAST}
assert set(RECIPE_TABLE) == set(RECIPES) and all(set(r) <= set(FIELDS) for r in RECIPE_TABLE.values())

VAL_SPLIT_CAP = 10_000  # a recipe's held-out split never exceeds this many images (ImageNet: 1%)
# The model switches with flags of their own; anything else goes through --model-opt KEY=VALUE.
MODEL_SWITCHES = ("activation", "lrn", "overlap_pool", "dropout", "init", "batch_norm", "pool_early")
# Settings of one invocation, never inherited by a resumed run; and what a resume may change besides
# (taken from the run's checkpoint unless given). Every other setting comes from the checkpoint.
PER_INVOCATION = frozenset(
    {"device", "stop_after", "progress", "workers", "resume", "overwrite", "out", "download"}
)
RESUME_MAY_CHANGE = PER_INVOCATION | {"epochs", "data_dir", "skip_bad_images", "report"}


def flag(name: str) -> str:
    """The command-line flag of a setting: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


# -- what the user gave ------------------------------------------------------------------------------------


def asked_of(cfg: TrainConfig) -> dict[str, Any]:
    """From Python: every setting that differs from its default counts as given."""
    default = TrainConfig()
    return {n: getattr(cfg, n) for n in FIELDS if getattr(cfg, n) != getattr(default, n)}


def check(asked: Mapping[str, Any]) -> None:
    """Refuse impossible values among the settings given, before any data is read or folder written: each
    through its flag's own check (the one `cnnlab train` parses with), then the pairs that must agree."""
    for name, value in asked.items():
        meta = FIELDS[name].metadata
        if not meta["flag"]:
            raise CnnlabError(f"{name} is worked out by cnnlab train, not given")
        if meta["choices"] and value not in meta["choices"]:
            raise CnnlabError(f"{flag(name)} {value!r}: choose one of {', '.join(meta['choices'])}")
        if meta["parse"] is not None:
            for item in value if isinstance(value, list) else [value]:
                try:
                    meta["parse"](str(item))
                except argparse.ArgumentTypeError as exc:
                    raise CnnlabError(f"argument {flag(name)}: {exc}") from None
    if asked.get("nesterov") and asked.get("momentum") == 0:
        raise CnnlabError("--nesterov needs a momentum above 0; pass --momentum or --no-nesterov")


def parse_model_options(asked: Mapping[str, Any]) -> dict[str, Any]:
    """The switches given: the named flags, then --model-opt KEY=VALUE (values as typed)."""
    options = {n: asked[n] for n in MODEL_SWITCHES if asked.get(n) is not None}
    for item in asked.get("model_opt") or []:
        key, value = argtypes.split_key_value(item)  # checked by `check`
        if key in options:  # one switch given two ways: refused rather than one silently winning
            given = options[key]
            named = (
                (flag(key) if given else "--no-" + flag(key)[2:])
                if isinstance(given, bool)
                else f"{flag(key)} {given}"
            )
            raise CnnlabError(f"{named} and --model-opt {item.strip()} both set {key}; give it once")
        options[key] = value
    return options


# -- the command line ------------------------------------------------------------------------------------


def _recipe_values(name: str) -> str:
    values = [f"{r} recipe {v}" for r, recipe in RECIPE_TABLE.items() for k, v in recipe.items() if k == name]
    return f"; {', '.join(values)}" if values else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; unset flags stay None so that a resumed run can tell what was given."""
    recipe_set = {k for r in RECIPE_TABLE.values() for k in r}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta["flag"]:
            continue
        kwargs: dict[str, Any] = {"help": meta["help"], "default": None, "dest": f.name}
        if f.name in ("model", "dataset"):
            kwargs["metavar"] = "NAME"
        if f.name == "model_opt":
            kwargs.update(action="append", metavar="KEY=VALUE", type=meta["parse"])
        elif "bool" in str(f.type):
            negatable = f.default is not False or f.name in recipe_set
            kwargs["action"] = argparse.BooleanOptionalAction if negatable else "store_true"
        else:
            kwargs["type"] = meta["parse"] or (float if "float" in str(f.type) else str)
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
        default = f"{f.default:g}" if isinstance(f.default, float) else str(f.default)
        if not meta["derived"] and f.default not in (None, "", False, dataclasses.MISSING):
            section = f", section {meta['section']}" if meta["section"] else ""
            kwargs["help"] += f" (default {default}{section}{_recipe_values(f.name)})"
        elif f.name in recipe_set:
            kwargs["help"] += f" ({_recipe_values(f.name)[2:]})"
        parser.add_argument(flag(f.name), **kwargs)


def asked_from_args(ns: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave on the command line (the flags left unset are None)."""
    return {name: getattr(ns, name) for name in FIELDS if getattr(ns, name, None) is not None}
