"""The model registry: one factory, `create(name, num_classes, in_channels, **switches)`, as in timm.

Each builder registers itself with `@register(...)` and declares its switches as keyword arguments with
defaults; `create` checks names against that signature and turns CLI strings ("false", "0.3") into the
default's type, so the command line can pass `--model-opt lrn=false` straight through. A keyword argument
whose default is a dataclass instance is a group of switches a family shares (`AlexNetSwitches`): its
fields are switches of their own, and `create` hands the builder the group with the values given.

Switch values may come from a stranger's checkpoint, so `create` refuses non-finite numbers and absurd
sizes before building anything: it first builds the network on the meta device (shapes only, no memory),
adds up its parameters and checks they fit in memory (`limits.check_fits`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import torch

from cnnlab import limits
from cnnlab.errors import CnnlabError, did_you_mean, first_line
from cnnlab.models.layers import Net


class AuxOutputs(NamedTuple):
    """A GoogLeNet's training-mode output: main logits and the auxiliary heads' logits."""

    logits: torch.Tensor
    aux: tuple[torch.Tensor, ...]


def split_outputs(out: torch.Tensor | AuxOutputs) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(logits, aux logits) for any model's output; aux is () for models without auxiliary heads."""
    if isinstance(out, AuxOutputs):
        return out.logits, tuple(out.aux)
    return out, ()


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    input_size: int  # default square input side
    paper: str
    description: str
    switches: dict[str, Any] = field(default_factory=dict)  # switch -> default value
    in_channels: int = 3  # the channels of the default input (1 for LeNet-5's grey digits)


Builder = Callable[..., Net]
_BUILDERS: dict[str, Builder] = {}
_INFO: dict[str, ModelInfo] = {}
_COMMON = ("num_classes", "in_channels")

F = TypeVar("F", bound=Builder)


_GROUPS: dict[str, dict[str, Any]] = {}  # model -> {builder argument: its default switch group}


def register(
    *,
    family: str,
    input_size: int,
    paper: str,
    description: str,
    name: str | None = None,
    in_channels: int = 3,
) -> Callable[[F], F]:
    """Register a builder under `name` (default: its function name)."""

    def wrap(builder: F) -> F:
        key = name or builder.__name__
        if key in _BUILDERS:
            raise ValueError(f"model {key} registered twice")
        switches: dict[str, Any] = {}
        groups: dict[str, Any] = {}
        for p in inspect.signature(builder).parameters.values():
            if p.name in _COMMON or p.default is inspect.Parameter.empty:
                continue
            if dataclasses.is_dataclass(p.default):
                groups[p.name] = p.default
                switches.update((f.name, getattr(p.default, f.name)) for f in dataclasses.fields(p.default))
            else:
                switches[p.name] = p.default
        _BUILDERS[key] = builder
        _INFO[key] = ModelInfo(key, family, input_size, paper, description, switches, in_channels)
        _GROUPS[key] = groups
        return builder

    return wrap


def names() -> list[str]:
    """Every registered model name, in registration order (AlexNets, VGGs, GoogLeNets, LeNet-5)."""
    return list(_BUILDERS)


def info(name: str) -> ModelInfo:
    _check_name(name)
    return _INFO[name]


# No layer of any model here is anywhere near this wide or this many classes; larger numbers are typos or
# tampering, refused before torch is asked for the memory (or overflows computing its size).
MAX_COUNT = 2**24


def check_switch_names(switches: Mapping[str, Any]) -> None:
    """Refuse switch names that are `create`'s own arguments (`num_classes`, `in_channels`): given as
    switches they would clash with (or silently replace) the class and channel counts."""
    clash = sorted(set(switches) & set(_COMMON))
    if clash:
        raise CnnlabError(
            f"{', '.join(clash)} cannot be given as a model switch: it is set by the data (the class "
            "count and image channels), not by --model-opt"
        )


def create_from(name: str, num_classes: int, in_channels: int, switches: Mapping[str, Any]) -> Net:
    """`create` with the switches as a mapping (from --model-opt or a checkpoint), names checked first:
    `create(name, num_classes=..., **switches)` would be a TypeError for a switch named num_classes."""
    check_switch_names(switches)
    return create(name, num_classes, in_channels, **dict(switches))


def create(name: str, num_classes: int = 1000, in_channels: int | None = None, **switches: Any) -> Net:
    """Build model `name`; unknown names or switches, and bad switch values, raise CnnlabError.
    `in_channels` defaults to the model's own (`info(name).in_channels`: 1 for LeNet-5, as the catalogue
    and `cnnlab models` say), not to a fixed 3."""
    _check_name(name)
    meta = _INFO[name]
    if in_channels is None:
        in_channels = meta.in_channels
    unknown = sorted(set(switches) - set(meta.switches))
    if unknown:
        valid = ", ".join(meta.switches) or "none"
        raise CnnlabError(f"model {name} has no switch {', '.join(unknown)}: valid switches are {valid}")
    values = {key: _coerce(key, value, meta.switches[key]) for key, value in switches.items()}
    for key, value in values.items():
        _check_value(key, value)
    counts = {"num_classes": num_classes, "in_channels": in_channels}
    for key, value in counts.items():
        counts[key] = _as_int(key, value)
        _check_value(key, counts[key])
    for arg, group in _GROUPS[name].items():
        own = {f.name for f in dataclasses.fields(group)}
        values[arg] = dataclasses.replace(group, **{key: values.pop(key) for key in own & set(values)})
    if torch.empty(0).device.type != "meta":
        _check_size(name, counts, values)
    model = _BUILDERS[name](**counts, **values)
    model.arch = name
    return model


def _check_value(key: str, value: Any) -> None:
    """Numbers a layer can be built from: finite, and counts below MAX_COUNT."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CnnlabError(f"{key}={value!r} is not valid: give a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_COUNT:
        raise CnnlabError(f"{key}={value!r} is not valid: at most {MAX_COUNT:,}")
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_value(key, v)


def _check_size(name: str, counts: dict[str, Any], values: dict[str, Any]) -> None:
    """Build the network on the meta device (no memory) and refuse it when its weights cannot fit."""
    try:
        with torch.device("meta"):
            shape = _BUILDERS[name](**counts, **values)
    except CnnlabError:
        raise
    except Exception as exc:
        if "overflow" in str(exc).lower() or isinstance(exc, OverflowError):
            raise CnnlabError(
                f"model {name} with these switches is far too large ({first_line(exc)}); "
                "use smaller switch values (e.g. width) or fewer classes"
            ) from None
        return  # a model that cannot be built on meta (towers placed on devices): built for real
    nbytes = sum(p.numel() * p.element_size() for p in shape.parameters())
    nbytes += sum(b.numel() * b.element_size() for b in shape.buffers())
    switches = ", ".join(f"{k}={v}" for k, v in values.items() if not dataclasses.is_dataclass(v))
    limits.check_fits(
        nbytes,
        f"model {name} ({sum(p.numel() for p in shape.parameters()):,} parameters"
        + (f"; {switches}" if switches else "")
        + ")",
        "use smaller switch values (e.g. width) or fewer classes",
    )


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        hint = did_you_mean(name, _BUILDERS)
        raise CnnlabError(f"unknown model {name!r}{hint}: choose one of {', '.join(_BUILDERS)}")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _as_int(key: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise CnnlabError(f"{key}={value!r} is not valid: give a whole number") from None
    return value


def coerce_switch(key: str, value: Any, default: Any) -> Any:
    """A switch's value as `create` builds with it: a CLI string turned into the type of the default."""
    return _coerce(key, value, default)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Turn a CLI string into the type of the switch's default; other values pass to the builder's checks."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        if isinstance(default, tuple) and isinstance(value, list):
            return tuple(value)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    text = value.strip().lower()
    if isinstance(default, bool):
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise CnnlabError(f"{key}={value!r} is not valid: use true or false")
    if isinstance(default, int):
        return _as_int(key, text)
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise CnnlabError(f"{key}={value!r} is not valid: give a number") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in value.split(","))
    return value
