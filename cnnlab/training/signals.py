"""Ctrl-C and SIGTERM during a run: before the first step they stop at once (nothing to save); from then on
they finish the current step, save a checkpoint with the mid-epoch position, and stop."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


class StoppedBeforeStart(KeyboardInterrupt):
    """SIGINT or SIGTERM before the first training step: nothing to save. `cnnlab train` prints the message
    and exits with 128 + the signal's number, as after a stop mid-run."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class Interrupt(BaseException):
    # Not an Exception: the data readers' `except Exception` (a broken file) must not swallow it.
    pass


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop polls after each step (handlers restored on exit). While
    `immediate` (the set-up, before the folder is written) a signal raises `Interrupt` at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.immediate = False
        self.saving = False  # a checkpoint is being written: even a second Ctrl-C waits for it
        self.forced = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous: dict[int, Any] = {}

        def handler(signum: int, frame: Any) -> None:
            if self.signal_name is not None and signum == signal.SIGINT:
                if self.saving:
                    self.forced = True
                    return
                raise KeyboardInterrupt  # a second Ctrl-C: the user really wants out now
            self.signal_name = signal.Signals(signum).name
            if self.immediate:
                self.immediate = False  # one Interrupt only: a second signal must not hit its handler
                raise Interrupt

        try:
            for sig in (int(signal.SIGINT), int(signal.SIGTERM)):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling, the loop still runs
            pass
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @contextlib.contextmanager
    def saving_checkpoint(self) -> Iterator[None]:
        """Defer a second Ctrl-C until the checkpoint is written: raised inside torch's zip writer it would
        surface as a long traceback (the files stay intact either way)."""
        self.saving = True
        try:
            yield
        finally:
            self.saving = False
        if self.forced:
            raise KeyboardInterrupt

    def before_start(self, what: str, again: str) -> StoppedBeforeStart:
        name = str(self.signal_name)
        return StoppedBeforeStart(name, f"stopped by {name} before the first training step; {what}; {again}")
