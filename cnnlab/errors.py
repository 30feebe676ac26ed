"""The one error type users see.

A `CnnlabError` is a problem with what the user gave us (a flag, a file, an input shape). The CLI prints
its message on one line and exits with code 2; programming errors keep raising normally.
"""


class CnnlabError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it, on one line."""

    exit_code = 2

    def __str__(self) -> str:
        # One line, whatever the caller wrote.
        return " ".join(super().__str__().split())


class NonFiniteLoss(CnnlabError):
    """Training stopped because the loss became NaN or infinite (a diverged run: too high a learning rate,
    or an initialisation that does not train). The claims record it as a result rather than a failure."""
