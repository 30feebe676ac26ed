"""Command-line entry point: argument parsing only.

Each command lives with the code it drives; the modules below each expose `register_cli(subparsers)`,
which adds its sub-commands and sets `func` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from cnnlab import __version__
from cnnlab.errors import CnnlabError

# Modules that contribute sub-commands, in the order `cnnlab --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "cnnlab.summary",
    "cnnlab.diagram",
    "cnnlab.compare",
    "cnnlab.check",
    "cnnlab.pictures",
    "cnnlab.training.main",
    "cnnlab.evaluate",
    "cnnlab.predict",
    "cnnlab.export",
    "cnnlab.data.cli",
    "cnnlab.experiments",
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        # The same "cnnlab: error:" prefix as CnnlabError (design.md), the sub-command in the help hint.
        self.exit(2, f"cnnlab: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CnnlabError as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `cnnlab ... | head` closed the pipe: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
