"""Start-up: how long `cnnlab --help`, `cnnlab models`, `cnnlab train --help` and a mistyped flag take,
against `python -c "import torch"` (what every command paid before argument parsing went torch-free); and
`cnnlab summary alexnet_fast`, a command that needs torch: its start, its work and its exit (the program
freezes its objects out of the collector's last sweep, `cnnlab.cli.entry`), against the same peer.

Each case is a fresh interpreter (`python -m cnnlab ...`), timed from the outside; the cases are
interleaved with the peer and summarised by their median. ratio = cnnlab seconds / `import torch`
seconds: below 1, the command answers before torch could even have been imported. `python -c pass`
(the interpreter alone) is shown as the floor.

    python -m bench.startup [--quick] [--write] [--reps N]
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from bench import common

PEER = "import torch"
CASES = {
    "cnnlab --help": ["--help"],
    "cnnlab models": ["models"],
    "cnnlab train --help": ["train", "--help"],
    "cnnlab train --epochs x (argument error)": ["train", "--epochs", "x"],
    "cnnlab summary alexnet_fast (imports torch)": ["summary", "alexnet_fast"],
}


def _python(*argv: str) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(
            [sys.executable, *argv], cwd=common.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    return run


def run(reps: int) -> common.Timings:
    cases = {"python -c pass": _python("-c", "pass"), PEER: _python("-c", PEER)}
    cases.update({name: _python("-m", "cnnlab", *argv) for name, argv in CASES.items()})
    return common.interleave(cases, reps=reps, warmup=1)


def markdown(t: common.Timings, reps: int) -> str:
    peer = t.median(PEER)
    rows = [["python -c pass (the floor)", f"{t.median('python -c pass'):.2f}", "", ""]]
    rows.append([f'python -c "{PEER}" (the peer)', f"{peer:.2f}", "1.00", common.spread(t.seconds[PEER])])
    for name in CASES:
        ratio = t.median(name) / peer
        rows.append([name, f"{t.median(name):.2f}", f"**{ratio:.2f}**", common.spread(t.seconds[name])])
    body = common.table(["command", "median s", "ratio to import torch", "range s"], rows)
    return (
        f"{body}\n\nratio = the command's median seconds / `python -c \"{PEER}\"`'s (< 1: it answers before "
        f"torch could be imported); {reps} runs of each, interleaved, each a fresh interpreter.\n"
    )


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=10, help="runs of each command (default 10)")
    args = p.parse_args()
    reps = 1 if args.quick else args.reps
    load = common.load_average()
    text = common.section(markdown(run(reps), reps), load)
    print(text)
    if args.write:
        common.update_benchmarks_md("startup", text)


if __name__ == "__main__":
    main()
