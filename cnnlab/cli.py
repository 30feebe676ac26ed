"""cnnlab: AlexNet, VGG and GoogLeNet as their papers describe them; train, evaluate, look inside and
reproduce the AlexNet paper's claims from the command line. Start with `cnnlab models`, then
`cnnlab train --help`; docs/quickstart.md walks through a first hour.

(For developers: argument parsing is torch-free. The modules in COMMAND_MODULES each expose
`register_cli(subparsers)`, which adds sub-commands whose `func` is a `commands.Lazy` reference: the
module doing the work, and torch with it, is imported only after the arguments have parsed.)
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import importlib
import io
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from cnnlab import __version__
from cnnlab.errors import CnnlabError, did_you_mean, first_line

# Modules that contribute sub-commands, in the order `cnnlab --help` lists them; none imports torch.
COMMAND_MODULES: tuple[str, ...] = (
    "cnnlab.commands.networks",
    "cnnlab.commands.pictures",
    "cnnlab.commands.train",
    "cnnlab.commands.runs",
    "cnnlab.commands.reproduce",
)

DESCRIPTION = (
    "AlexNet, VGG and GoogLeNet as their papers describe them: list and inspect the models, train them "
    "with the paper's recipe or a fast one, evaluate, predict, export, draw what they learned, and "
    "reproduce the AlexNet paper's claims. New here? `cnnlab models`, then `make demo` or "
    "docs/quickstart.md."
)
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<word>[^']*)' \(choose from (?P<choices>.*)\)$")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        # "invalid choice: 'trian'": add the nearest choice, as for model and data set names.
        found = _INVALID_CHOICE.search(message)
        if found:
            hint = did_you_mean(found["word"], re.findall(r"'([^']*)'", found["choices"]))
            message = (
                message[: found.start("word") + len(found["word"]) + 1]
                + hint
                + message[found.end("word") + 1 :]
            )
        # The same "cnnlab: error:" prefix as CnnlabError (design.md), the sub-command in the help hint.
        self.exit(2, f"cnnlab: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, with a did-you-mean for an unknown flag (`--batchsize`: '--batch-size'), said by the
        sub-command that was given it, for every command."""
        ns, extra = self.parse_known_args(args, namespace)
        if not extra:
            return ns
        target: argparse.ArgumentParser = self
        for action in self._actions:
            if (
                isinstance(action, argparse._SubParsersAction)
                and getattr(ns, "command", None) in action.choices
            ):
                target = action.choices[ns.command]
        flags = [o for a in target._actions for o in a.option_strings if o.startswith("--")]
        hints = [did_you_mean(e.split("=")[0], flags) for e in extra if e.startswith("--")]
        target.error(f"unrecognized arguments: {' '.join(extra)}{next((h for h in hints if h), '')}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


class _Forgiving(io.TextIOBase):
    """stdout whose write failures (a full device, an I/O error) are dropped: output that cannot be
    written is never the reason a run or an export dies. A closed pipe still raises BrokenPipeError,
    which `main` and the training progress handle."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self.stream.write(text))
        except BrokenPipeError:
            raise
        except OSError:
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError:
            pass

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def fileno(self) -> int:
        return int(self.stream.fileno())


def _is_allocation_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(
        s in text for s in ("can't allocate memory", "out of memory", "cannot allocate memory")
    )


def entry() -> int:
    """The `cnnlab` program (the console script and `python -m cnnlab`): `main`, then the objects it leaves
    are frozen out of the cyclic garbage collector, whose last sweep through torch's module graph at
    interpreter exit took about 0.4 s of every command's wall time on a 2-core CPU (atexit handlers and
    finalisers still run). In-process callers (the tests) call `main` and keep a collecting interpreter."""
    code = main()
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    stdout, stderr = sys.stdout, sys.stderr
    # A closed stdout or stderr (`>&-`) leaves None here: printing then goes nowhere instead of failing.
    sys.stdout = _Forgiving(stdout if stdout is not None else open(os.devnull, "w"))  # noqa: SIM115
    if stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CnnlabError as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (MemoryError, RuntimeError) as exc:
        if not _is_allocation_failure(exc):
            raise
        # An allocation the size checks (cnnlab/limits.py) did not foresee: one line, torch's first only.
        print(
            f"cnnlab: error: out of memory ({first_line(exc)}); lower --batch-size or --input-size, "
            "or free some memory",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cnnlab ... | head` closed the pipe: not an error worth a traceback.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # A path component over the file system's limit (255 bytes), wherever a command met it.
        where = f" ({str(exc.filename)[:80]}...)" if exc.filename else ""
        print(
            f"cnnlab: error: a file or folder name is longer than the file system allows{where}; "
            "use shorter names",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
