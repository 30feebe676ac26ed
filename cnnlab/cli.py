"""cnnlab: AlexNet, VGG and GoogLeNet as their papers describe them; train, evaluate, look inside and
reproduce the AlexNet paper's claims from the command line. Start with `cnnlab models`, then
`cnnlab train --help`; docs/quickstart.md walks through a first hour.

(For developers: argument parsing is torch-free. The modules in COMMAND_MODULES each expose
`register_cli(subparsers)`, which adds sub-commands whose `func` is a `commands.Lazy` reference: the
module doing the work, and torch with it, is imported only after the arguments have parsed.)
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from cnnlab import __version__
from cnnlab.errors import CnnlabError, did_you_mean

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
