"""Honest verdicts: a difference counts only when it is larger than the spread over seeds.

`compare` judges "the arm the paper favours has the lower value": reproduced when the mean difference
points the paper's way and exceeds the seed spread, not reproduced when it points the other way by more
than the spread, inconclusive otherwise (including when a single seed leaves no spread to judge by).
The spread is the larger sample standard deviation of the two arms (unpaired: different nets), or the
standard deviation of the per-seed differences (paired: the same net measured two ways, e.g. ten-crop
and centre crop), because there the nets' own spread cancels out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")


def pct(x: float) -> str:
    """A fraction as percent, or 'n/a' for a missing value."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f}%"


def plural(n: int, noun: str) -> str:
    """ "1 seed", "2 seeds": a count and its noun, as a plot title or a sentence says it."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def points(x: float) -> str:
    """A difference of fractions in percentage points."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} points"


def finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if math.isfinite(v)]


def mean(values: Sequence[float]) -> float:
    v = finite(values)
    return statistics.fmean(v) if v else math.nan


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); NaN with fewer than two values."""
    v = finite(values)
    return statistics.stdev(v) if len(v) >= 2 else math.nan


def mean_std(values: Sequence[float], fmt: Callable[[float], str] = pct) -> str:
    """'12.30% ± 0.40%' over seeds, or the single value when there is one."""
    m, s = mean(values), std(values)
    return fmt(m) if not math.isfinite(s) else f"{fmt(m)} ± {fmt(s)}"


def compare(
    claimed: Sequence[float],
    other: Sequence[float],
    *,
    what: str,
    claimed_label: str,
    other_label: str,
    paired: bool = False,
    fmt: Callable[[float], str] = points,
) -> Verdict:
    """Does `claimed` have the lower `what` than `other`, beyond the seed spread?

    Values are per seed (NaN marks a run that failed; it is left out and said so). Paired values are the
    same nets measured two ways and must line up seed by seed.
    """
    a, b = finite(claimed), finite(other)
    dropped = len(claimed) - len(a) + len(other) - len(b)
    note = f" ({dropped} failed run{'s' if dropped != 1 else ''} left out)" if dropped else ""
    if not a or not b:
        return Verdict(INCONCLUSIVE, f"no finished runs to compare{note}")
    if paired:
        if dropped or len(a) != len(b):
            raise ValueError("paired comparison needs the same finished seeds in both arms")
        diffs = [y - x for x, y in zip(a, b, strict=True)]
        diff, spread, kind = mean(diffs), std(diffs), "spread of the per-seed differences"
    else:
        diff = mean(b) - mean(a)
        spreads = finite([std(a), std(b)])
        spread, kind = (max(spreads) if spreads else math.nan), "seed spread"
    if not math.isfinite(spread):
        return Verdict(
            INCONCLUSIVE,
            f"{claimed_label} is {'lower' if diff > 0 else 'higher'} in {what} by {fmt(abs(diff))}, "
            f"but one seed gives no spread to judge the difference by (use --seeds 2 or more){note}",
        )
    if abs(diff) <= spread:
        return Verdict(
            INCONCLUSIVE,
            f"the difference in {what} ({claimed_label} minus {other_label}: {fmt(-diff)}) is within the "
            f"{kind} ({fmt(spread)}){note}",
        )
    if diff > 0:
        return Verdict(
            REPRODUCED,
            f"{claimed_label} is lower in {what} than {other_label} by {fmt(diff)}, more than the {kind} "
            f"({fmt(spread)}){note}",
        )
    return Verdict(
        NOT_REPRODUCED,
        f"{claimed_label} is higher in {what} than {other_label} by {fmt(-diff)}, more than the {kind} "
        f"({fmt(spread)}): the opposite of the paper{note}",
    )


def combine(parts: Sequence[tuple[str, Verdict]]) -> Verdict:
    """One verdict for a claim with several parts: reproduced only if every part is; not reproduced if any
    part is contradicted; else inconclusive. The reason lists each part."""
    verdicts = [v.verdict for _, v in parts]
    if all(v == REPRODUCED for v in verdicts):
        overall = REPRODUCED
    elif NOT_REPRODUCED in verdicts:
        overall = NOT_REPRODUCED
    else:
        overall = INCONCLUSIVE
    return Verdict(overall, "; ".join(f"{name}: {v.verdict} ({v.reason})" for name, v in parts))
