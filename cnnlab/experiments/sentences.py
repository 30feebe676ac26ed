"""One plain sentence per claim, the one a reader quotes: what the choice does, in which direction, how sure,
and how that compares with the paper's size, in words.

    With LRN, trained alexnet_small nets make 0.60 points fewer errors on fashion-mnist (95% CI 0.20 to
    1.00 points fewer, 10 seeds): the paper's direction, about a third of its ImageNet size.

The sign decides the words ("fewer" or "more"); a number in a sentence is never negative. Every trained
claim's headline (`ClaimResult.ours`, the index's "ours" column) is built here.
"""

from __future__ import annotations

import math

from cnnlab.experiments.verdict import Interval

# Fractions a reader says, for an effect smaller than the paper's.
_FRACTIONS = (
    (0.1, "a tenth"),
    (0.2, "a fifth"),
    (0.25, "a quarter"),
    (1 / 3, "a third"),
    (0.5, "half"),
    (2 / 3, "two thirds"),
    (0.75, "three quarters"),
)
_TIMES = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}


def _num(x: float, digits: int = 2) -> str:
    return f"{abs(x):.{digits}f}"


def size_words(ratio: float) -> str:
    """`ratio` (ours over the paper's, same sign) in words: 'about a third of', 'about the same as',
    'about twice'. Below a twentieth: 'a small fraction of'."""
    if not math.isfinite(ratio) or ratio < 0:
        raise ValueError(f"size_words needs a ratio >= 0, got {ratio}")
    if ratio < 0.05:
        return "a small fraction of"
    if ratio < 0.85:
        near = min(_FRACTIONS, key=lambda f: abs(math.log(ratio / f[0])))
        return f"about {near[1]} of"
    if ratio <= 1.2:
        return "about"
    if ratio < 1.5:
        return "somewhat more than"
    n = round(ratio)
    return f"about {_TIMES.get(n, f'{n} times')}"


def comparison(mean: float, paper: float | None, where: str) -> str:
    """How our effect compares with the paper's `paper` (positive: the paper's direction), in words."""
    if paper is None or not math.isfinite(mean):
        return ""
    if mean == 0:
        return f"no effect, where the paper reports {where}"
    if mean < 0:
        return "against the paper's direction"
    words = size_words(mean / paper)
    size = f"its {where} size" if where else "its size"
    return f"the paper's direction, {words} {size}"


def _ci(iv: Interval, fewer: str, more: str, unit: str, digits: int) -> str:
    """The interval in the sentence's own direction: '95% CI 0.20 to 1.00 points fewer', or with the far
    end across zero '95% CI 0.49 points more to 1.44 points fewer'."""
    seeds = f"{iv.n} seed{'s' if iv.n != 1 else ''}"
    if not math.isfinite(iv.low):
        return f"{seeds}: no interval"
    lo, hi = (iv.low, iv.high) if iv.mean >= 0 else (-iv.high, -iv.low)  # both in the sentence's direction
    word = fewer if iv.mean >= 0 else more
    other = more if iv.mean >= 0 else fewer
    if lo >= 0:
        return f"95% CI {_num(lo, digits)} to {_num(hi, digits)} {unit} {word}, {seeds}"
    return f"95% CI {_num(lo, digits)} {unit} {other} to {_num(hi, digits)} {unit} {word}, {seeds}"


def effect_sentence(
    *,
    change: str,
    subject: str,
    iv: Interval,
    paper: float | None,
    where: str = "",
    fewer: str = "fewer errors",
    more: str = "more errors",
    verb: str = "make",
    unit: str = "points",
    scale: float = 100.0,
    digits: int = 2,
    tail: str = "",
) -> str:
    """'With LRN, trained alexnet_small nets make 0.60 points fewer errors on fashion-mnist (95% CI ...):
    the paper's direction, about a third of its ImageNet size.'

    `iv` is the effect in the paper's direction (positive: `fewer`), as a fraction (shown times `scale`,
    in `unit`); `paper` the paper's size on the same scale (None: no size to compare); `change` the
    clause before the comma ("With LRN"); `subject` who does it ("trained alexnet_small nets"); `tail`
    what follows the number (" on fashion-mnist")."""
    if not math.isfinite(iv.mean):
        return f"{change}, {subject}: no measurement (every seed failed)."
    versus = comparison(iv.mean, paper, where)
    said = difference(iv, fewer=fewer, more=more, unit=unit, scale=scale, digits=digits, tail=tail)
    return f"{change}, {subject} {verb} {said}" + (f": {versus}." if versus else ".")


def difference(
    iv: Interval,
    *,
    fewer: str = "fewer errors",
    more: str = "more errors",
    unit: str = "points",
    scale: float = 100.0,
    digits: int = 2,
    tail: str = "",
) -> str:
    """'0.60 points fewer errors (95% CI 0.20 to 1.00 points fewer, 6 seeds)': an effect (positive:
    `fewer`) in words, its interval in the same direction; for a second number beside a claim's sentence."""
    if not math.isfinite(iv.mean):
        return "no measurement"
    if iv.mean == 0:
        amount = f"the same number of {fewer.split()[-1]}" if fewer.endswith("errors") else f"no {fewer}"
    else:
        amount = f"{_num(scale * iv.mean, digits)} {unit} {fewer if iv.mean > 0 else more}"
    ci = _ci(
        Interval(scale * iv.mean, scale * iv.low, scale * iv.high, iv.n, iv.sd, iv.method),
        fewer.split()[0],
        more.split()[0],
        unit,
        digits,
    )
    return f"{amount}{tail} ({ci})"


def factor_sentence(
    *,
    subject: str,
    what: str,
    than: str,
    iv: Interval,
    paper: float | None,
    where: str = "",
    bound: bool = False,
) -> str:
    """An effect measured as a log ratio (relu-vs-tanh's speed-up): 'ReLU nets reach 10% training error
    1.15 times as fast as tanh nets (95% CI 0.91 to 1.46 times, 5 seeds): the paper's direction, about a
    fifth of its CIFAR-10 size.' The comparison is on the log scale (1x is no effect); `bound` marks an
    interval whose upper end is only a bound (some seeds never got there)."""
    if not math.isfinite(iv.mean):
        return f"{subject} {what}: no measurement."
    ge = "at least " if bound else ""
    faster = iv.mean >= 0
    # The interval in the sentence's own terms: "as slowly" inverts the speed-up and swaps its ends (the
    # capped high end of a speed-up becomes the low end, "at most", of a slow-down).
    if faster:
        low, high = f"{math.exp(iv.low):.2f}", f"{ge}{math.exp(iv.high):.2f}"
    else:
        low, high = f"{'at most ' if bound else ''}{math.exp(-iv.high):.2f}", f"{math.exp(-iv.low):.2f}"
    ci = (
        f"95% CI {low} to {high} times, {iv.n} seeds"
        if math.isfinite(iv.low)
        else f"{iv.n} seed{'s' if iv.n != 1 else ''}: no interval"
    )
    factor = math.exp(iv.mean)
    if faster:
        amount = f"{ge}{factor:.2f} times as fast as {than}"
    else:
        amount = f"{1 / factor:.2f} times as slowly as {than}"
    versus = comparison(iv.mean, paper, where)
    return f"{subject} {what} {amount} ({ci})" + (f": {versus}." if versus else ".")
