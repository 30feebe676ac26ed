"""Plain text tables and numbers, the one style every command prints (torch-free: `cnnlab models` uses it)."""

from __future__ import annotations

import math


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals; "n/a" for a missing value (None, NaN, infinite)."""
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def render(header: list[str], body: list[list[str]], right: set[int]) -> str:
    """A plain text table; columns in `right` are right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in body), rule])


def format_seconds(seconds: float) -> str:
    """1.5 s, 2:05, 1:02:05: a duration as people read it."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
