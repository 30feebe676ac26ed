"""Honest verdicts: a 95% confidence interval of the effect over paired seeds, and the settling rule.

Every claim reduces to one number per seed, the *effect*, signed so that a positive value is what the paper
says (e.g. "error without LRN minus error with LRN"). Arms that share a seed share the data order, the
augmentation stream and, where the architectures allow, the initial weights, so the per-seed differences
are paired and the nets' own spread cancels out. The interval is a t-interval over those differences
(`t_interval`), or a bootstrap over nets where the effect is not a per-seed difference (`bootstrap`).

The rule (`judge`):
- **reproduced**: the interval lies above zero (the paper's direction);
- **contradicted**: it lies below zero;
- **no effect of the paper's size at this scale**: it contains zero but excludes the paper's effect size;
- **inconclusive**: it contains both; the report then says how many seeds would settle it at the observed
  spread (`seeds_needed`).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cnnlab.texttable import pct

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
NO_EFFECT = "no effect of the paper's size at this scale"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE)
SETTLED = (REPRODUCED, CONTRADICTED, NO_EFFECT)
LEVEL = 0.95
MAX_SEEDS = 1000  # seeds_needed gives up beyond this


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    @property
    def settled(self) -> bool:
        return self.verdict in SETTLED


@dataclass(frozen=True)
class Interval:
    """The mean effect and its confidence interval over `n` seeds (or nets)."""

    mean: float
    low: float
    high: float
    n: int
    sd: float  # sample standard deviation of the per-seed effects (NaN below two)
    method: str  # "t" or "bootstrap"

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


# -- formatting ------------------------------------------------------------------------------------------


def points(x: float) -> str:
    """A difference of fractions in percentage points."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} points"


def signed_points(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:+.2f} points"


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


def with_ci(iv: Interval, fmt: Callable[[float], str] = signed_points) -> str:
    """'+1.20 points (95% CI -0.30 points to +2.70 points, 6 seeds)'."""
    if not math.isfinite(iv.low):
        return f"{fmt(iv.mean)} ({iv.n} seed{'s' if iv.n != 1 else ''}: no interval)"
    return f"{fmt(iv.mean)} (95% CI {fmt(iv.low)} to {fmt(iv.high)}, {iv.n} seeds)"


# -- Student's t ----------------------------------------------------------------------------------------


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (scipy's, accurate to the last digits
    also in the far tails and next to the median, where a hand-written bisection on the CDF was not)."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    from scipy import stats  # here, not at the top: `cnnlab` starts without importing scipy

    return float(stats.t.ppf(p, df))


# -- intervals -------------------------------------------------------------------------------------------


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean ± t(n-1) * sd / sqrt(n) over the finite values; NaN bounds with fewer than two."""
    v = finite(values)
    n, m, s = len(v), mean(v), std(v)
    if n < 2:
        return Interval(m, math.nan, math.nan, n, math.nan, "t")
    half = t_quantile(0.5 + level / 2.0, n - 1) * s / math.sqrt(n)
    return Interval(m, m - half, m + half, n, s, "t")


def bootstrap(
    n: int,
    statistic: Callable[[Sequence[int]], float],
    *,
    level: float = LEVEL,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap over `n` units (nets): `statistic` of index lists drawn with replacement.

    Used where the effect is not a difference per seed (an ensemble's gain over its members)."""
    whole = statistic(list(range(n)))
    if n < 2:
        return Interval(whole, math.nan, math.nan, n, math.nan, "bootstrap")
    rng = random.Random(seed)
    stats = sorted(
        s
        for s in (statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
        if math.isfinite(s)
    )
    if not stats:
        return Interval(whole, math.nan, math.nan, n, math.nan, "bootstrap")
    lo_i = math.floor((1 - level) / 2 * (len(stats) - 1))
    hi_i = math.ceil((1 + level) / 2 * (len(stats) - 1))
    return Interval(whole, stats[lo_i], stats[hi_i], n, statistics.stdev(stats), "bootstrap")


def seeds_needed(sd: float, distance: float, level: float = LEVEL) -> int | None:
    """The fewest seeds whose t-interval half-width, at standard deviation `sd`, is below `distance`;
    None when no number up to MAX_SEEDS would do (or the spread is unknown)."""
    if not (math.isfinite(sd) and math.isfinite(distance)) or distance <= 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, MAX_SEEDS + 1):
        if t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n) < distance:
            return n
    return None


# -- the rule --------------------------------------------------------------------------------------------


def judge(
    iv: Interval,
    *,
    what: str,
    paper: float | None,
    fmt: Callable[[float], str] = signed_points,
    open_low: bool = False,
    open_high: bool = False,
    dropped: int = 0,
) -> Verdict:
    """The settling rule on the interval `iv` of an effect that is positive in the paper's direction.

    `paper` is the paper's effect size on the same scale (None when the paper gives no number: then only
    reproduced, contradicted or inconclusive). `open_low`/`open_high`: some per-seed values were bounds
    (a run that never reached a threshold), so the interval's low or high end is not known to be final.
    """
    note = f" ({dropped} failed or unmeasured seed{'s' if dropped != 1 else ''} left out)" if dropped else ""
    size = f"the paper's {fmt(paper)}" if paper is not None else ""
    if iv.n < 2 or not math.isfinite(iv.low):
        return Verdict(
            INCONCLUSIVE,
            f"{what}: {fmt(iv.mean)} from {iv.n} seed{'s' if iv.n != 1 else ''}; an interval needs at "
            f"least 2 paired seeds (use --seeds 2 or more){note}",
        )
    ci = f"{what}: {with_ci(iv, fmt)}"
    if iv.low > 0 and not open_low:
        rel = ""
        if paper is not None:
            rel = (
                f"; smaller than {size}"
                if iv.high < paper
                else f"; larger than {size}"
                if iv.low > paper
                else f"; consistent with {size}"
            )
        return Verdict(REPRODUCED, f"{ci}: the interval lies on the paper's side of zero{rel}{note}")
    if iv.high < 0 and not open_high:
        return Verdict(
            CONTRADICTED, f"{ci}: the interval lies on the other side of zero from the paper{note}"
        )
    if paper is not None and not open_high and paper > iv.high and iv.contains(0.0):
        return Verdict(NO_EFFECT, f"{ci}: it contains zero and excludes {size}{note}")
    if open_low or open_high:
        why = "some seeds never reached the threshold, so their values are only bounds"
        return Verdict(INCONCLUSIVE, f"{ci}: {why}; a longer budget would settle it{note}")
    distance = abs(iv.mean) if paper is None else max(abs(iv.mean), paper - iv.mean)
    need = seeds_needed(iv.sd, distance)
    need_text = (
        f"about {need} paired seeds would settle it at the observed spread (sd {fmt(iv.sd).lstrip('+')})"
        if need is not None
        else f"no affordable number of seeds would settle it (sd {fmt(iv.sd).lstrip('+')})"
    )
    contains = "zero and " + size if paper is not None else "zero"
    return Verdict(INCONCLUSIVE, f"{ci}: it contains {contains}; {need_text}{note}")


def judge_no_effect(
    iv: Interval, *, what: str, margin: float, fmt: Callable[[float], str] = signed_points
) -> Verdict:
    """The rule for a claim of *no* effect (VGG's "LRN does not improve model A"): an equivalence test.

    The paper's "no effect" is reproduced when the whole interval lies within +-`margin` (the smallest
    difference the paper itself reports as real), contradicted when it excludes zero (the choice matters
    here, one way or the other), inconclusive otherwise."""
    if iv.n < 2 or not math.isfinite(iv.low):
        return Verdict(
            INCONCLUSIVE, f"{what}: {fmt(iv.mean)} from {iv.n} seed(s); an interval needs 2 or more"
        )
    ci = f"{what}: {with_ci(iv, fmt)}"
    if -margin < iv.low and iv.high < margin:
        return Verdict(
            REPRODUCED, f"{ci}: the interval lies within {fmt(margin).lstrip('+')} of zero either way"
        )
    if iv.low > 0 or iv.high < 0:
        return Verdict(CONTRADICTED, f"{ci}: the interval excludes zero, so the choice has an effect here")
    need = seeds_needed(iv.sd, margin - abs(iv.mean))
    more = (
        f"about {need} paired seeds would settle it" if need else "no affordable number of seeds settles it"
    )
    return Verdict(
        INCONCLUSIVE,
        f"{ci}: it contains zero but reaches beyond {fmt(margin).lstrip('+')}; {more} at the observed spread",
    )


def primary(parts: Sequence[tuple[str, Verdict]]) -> Verdict:
    """A claim with several parts takes its first (headline) part's verdict; the reason lists each part."""
    return Verdict(parts[0][1].verdict, "; ".join(f"{name}: {v.verdict} ({v.reason})" for name, v in parts))
