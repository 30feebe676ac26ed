"""The transcripts in README.md and docs/*.md that need no training (`cnnlab models`, `summary`, `check`)
are re-run with the current code and compared with the text, so they cannot go stale.

A transcript is a fenced block whose lines start with `$ cnnlab ...`, each followed by its output. Lines
of the doc must appear in the real output in the same order (whitespace runs compared as one space);
"..." stands for anything: a whole "..." line for rows left out, "..." inside a line for columns left
out. `$ cd DIR` changes the directory the next commands run in; `; echo "exit $?"` adds the exit line.
Commands whose output depends on the machine, the clock or randomness (training, timing, `--init`'s
freshly drawn weights) are not re-run here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from cnnlab.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DETERMINISTIC = ("models", "summary", "check")


def transcripts() -> list[tuple[str, int, Path, str, list[str]]]:
    """(doc, line, directory, command, expected output lines) for every deterministic transcript."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        in_block, cwd = False, ROOT  # the directory persists through a doc, as in one shell session
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("```"):
                in_block = not in_block
                i += 1
                continue
            if in_block and line.startswith("$ cd "):
                cwd = cwd / line[5:].strip()
                i += 1
                continue
            if in_block and line.startswith("$ cnnlab "):
                command, start = line[2:], i + 1
                i += 1
                while i < len(lines) and not lines[i].startswith(("$ ", "```")):
                    i += 1
                words = shlex.split(command.split(";")[0])
                if words[1] in DETERMINISTIC and "--init" not in words:
                    found.append((doc.name, start, cwd, command, lines[start:i]))
                continue
            i += 1
    return found


def run(command: str, cwd: Path) -> str:
    words = shlex.split(command.split(";")[0])[1:]
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(words)
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        os.chdir(old)
    text = out.getvalue() + err.getvalue()
    if 'echo "exit $?"' in command:
        text += f"exit {code}\n"
    return text


def _norm(line: str) -> str:
    return " ".join(line.split())


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part.strip()) for part in _norm(line).split("...")))


CASES = transcripts()


def test_the_docs_hold_transcripts_to_check() -> None:
    commands = {c.split()[1] for _, _, _, c, _ in CASES}
    assert {"models", "summary", "check"} <= commands, commands


@pytest.mark.parametrize("doc,line,cwd,command,expected", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_transcript_matches_the_current_code(
    doc: str, line: int, cwd: Path, command: str, expected: list[str]
) -> None:
    actual = [_norm(a) for a in run(command, cwd).splitlines()]
    # An indented line continues the one before it (a long note wrapped to fit the page).
    joined: list[str] = []
    for want in expected:
        if want.startswith("    ") and joined:
            joined[-1] += " " + want.strip()
        else:
            joined.append(want)
    at = 0
    for want in joined:
        if _norm(want) in ("", "..."):
            continue
        pattern = _pattern(want)
        while at < len(actual) and not pattern.fullmatch(actual[at]):
            at += 1
        assert at < len(actual), (
            f"{doc}, transcript at line {line}: `{command}` no longer prints\n  {want}\n"
            f"in this order; it prints:\n" + "\n".join(actual)
        )
        at += 1


def test_readme_network_table_counts_the_catalogues_parameters() -> None:
    """The README's table of networks quotes each model's parameters at 1000 classes as the catalogue has
    them (the catalogue itself is tested against the live models)."""
    from cnnlab import catalog

    entries = {e["name"]: e for e in catalog.load()}
    rows = re.findall(
        r"^\| `(\w+)` \|[^|]*\| ([0-9,]+)( \(10 classes)?", (ROOT / "README.md").read_text(), re.M
    )
    assert rows
    for name, count, small in rows:
        wanted = entries[name]["quoted"]["params"] if small else entries[name]["params"]["1000"]
        assert int(count.replace(",", "")) == wanted, name
