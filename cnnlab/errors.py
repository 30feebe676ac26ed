"""The one error type users see.

A `CnnlabError` is a problem with what the user gave us (a flag, a file, an input shape). The CLI prints
its message on one line and exits with code 2; programming errors keep raising normally.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnlabError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it, on one line."""

    exit_code = 2

    def __str__(self) -> str:
        # One line, whatever the caller wrote.
        return " ".join(super().__str__().split())


class NonFiniteLoss(CnnlabError):
    """Training stopped because the loss became NaN or infinite (a diverged run: too high a learning rate,
    or an initialisation that does not train). The claims record it as a result rather than a failure."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of `exc`'s message, at most `limit` characters (torch's C++ errors carry
    kilobytes of stack frames after it), or the exception's type name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ " (did you mean 'X'?)" for the choice closest to a mistyped `word`, or "" when none is close."""
    options = list(choices)
    close = difflib.get_close_matches(word.lower(), [c.lower() for c in options], n=1, cutoff=0.6)
    if not close:
        return ""
    match = next(c for c in options if c.lower() == close[0])
    return f" (did you mean {match!r}?)"
