"""argparse types for the counts and seeds every command takes, so a bad number is one line at parse time.

`--limit -5`, `--cols 0` or `--seed 1e99` would otherwise reach slicing (a negative limit silently drops
images from the end), numpy (a zero-column grid divides by zero) or torch (a seed beyond 64 bits is a
traceback). With these types argparse refuses them like any unknown flag: `cnnlab: error: argument
--limit: -5 is not a whole number >= 1 (see cnnlab eval --help)`, exit code 2.
"""

from __future__ import annotations

import argparse
import ast
import math
from collections.abc import Callable
from typing import Any


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]."""

    def parse(text: str) -> int:
        value = _whole(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not a whole number >= {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is larger than {high:,}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


# Counts of images, classes, columns...: no command needs more than this, and beyond it a typo (1e9)
# only reaches an allocator that aborts.
MAX_COUNT = 2**31 - 1

positive = at_least(1, MAX_COUNT)
non_negative = at_least(0, MAX_COUNT)


def seed(text: str) -> int:
    """A random seed: torch takes any value that fits in 64 bits (negative ones wrap)."""
    value = _whole(text)
    if not -(2**63) <= value < 2**64:
        raise argparse.ArgumentTypeError(f"{value} does not fit in 64 bits")
    return value


seed.__name__ = "seed"


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def positive_number(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not a number > 0")
    return value


def non_negative_number(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not a number >= 0")
    return value


def fraction(text: str) -> float:
    """A fraction in [0, 1): momentum, warm-up share, label smoothing."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value:g} is not a fraction in [0, 1)")
    return value


def count_or_fraction(text: str) -> float:
    """--val-split: a number of images, a fraction in (0, 1) of them, or 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value == 0 or 0 < value < 1 or (value >= 1 and value == int(value)))):
        raise argparse.ArgumentTypeError(
            f"{text} is not a number of images (e.g. 10000), a fraction in (0, 1) (e.g. 0.1) or 0"
        )
    return int(value) if value >= 1 else value


positive_number.__name__ = "number > 0"
non_negative_number.__name__ = "number >= 0"
fraction.__name__ = "fraction"
count_or_fraction.__name__ = "count or fraction"


def split_key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE (--model-opt, --kwargs) as (key, value): the key a Python name (dashes as underscores)."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: write key=value, e.g. width=0.5")
    return key, value.strip()


def key_value(text: str) -> str:
    """A KEY=VALUE flag, checked and kept as written."""
    split_key_value(text)
    return text


def layer_names(text: str) -> str:
    """A comma-separated list of layer names (--freeze); one that names none ('', ',') froze nothing,
    silently."""
    if not text.strip(" ,"):
        raise argparse.ArgumentTypeError(f"{text!r} names no layer; give e.g. conv1-conv5, or leave it out")
    return text


layer_names.__name__ = "layer names"


def literal(value: Any) -> Any:
    """A KEY=VALUE value for a user's network: a Python literal (10, 0.5, True, (3, 3)) or the string."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


key_value.__name__ = "KEY=VALUE"
