"""Timing, machine and report helpers shared by every benchmark in bench/.

Every figure here is a ratio against a peer measured in the same process run (never an
absolute time alone). Repetitions of peer and ours are interleaved (A B A B ...) and summarised by their
median, so a burst of load from another process hits both sides instead of one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# torch is imported inside the functions that need it, so a tiny worker can use the memory probes
# without paying for (and being measured with) torch.

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"  # git-ignored: JSON results, unpacked data for the torchvision peer
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
FASHION_MNIST_DIR = Path(os.environ.get("CNNLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


# ---------------------------------------------------------------------------------------------- timing


@dataclass
class Timings:
    """Seconds per repetition for each named case, in the order they ran."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # what each call returned

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def rate(self, name: str, items: int) -> float:
        """Items per second from the median repetition."""
        return items / self.median(name)

    def extra(self, name: str, key: str) -> float:
        """Median over repetitions of a number the case returned (e.g. its seconds waiting for data)."""
        return statistics.median(e[key] for e in self.extras[name])

    def pair_ratios(self, ours: str, peer: str) -> list[float]:
        """peer time / our time for each adjacent pair: > 1 means ours is faster."""
        return [p / o for o, p in zip(self.seconds[ours], self.seconds[peer], strict=False)]


def interleave(cases: Mapping[str, Callable[[], object]], reps: int, warmup: int = 1) -> Timings:
    """Run every case `warmup` times untimed, then `reps` rounds of one timed call each, alternating.

    The order within a round alternates too (A B, B A, ...), so neither side always runs right after
    the other's cache-cold moment. A case may return a dict of numbers; they are kept in `extras`.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    out = Timings({name: [] for name in names}, {name: [] for name in names})
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            result = cases[name]()
            out.seconds[name].append(time.perf_counter() - t0)
            out.extras[name].append(result if isinstance(result, dict) else {})
    return out


def spread(values: Sequence[float]) -> str:
    """'min-max' of a list, for the reader to judge the noise behind a median."""
    return f"{min(values):.2f}-{max(values):.2f}"


# --------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine_line() -> str:
    """One line naming the machine, for every section of BENCHMARKS.md."""
    import torch
    import torchvision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}"
    )


def wait_for_quiet(max_load: float, max_wait_s: float) -> float:
    """Sleep until the 1-minute load average drops below `max_load` (or the wait runs out); return it."""
    deadline = time.monotonic() + max_wait_s
    while load_average() >= max_load and time.monotonic() < deadline:
        time.sleep(15)
    return load_average()


# ---------------------------------------------------------------------------------------- memory probe


def _tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (DataLoader workers are children of the training process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that share them, so a sum over
    the main process and its forked loader workers does not count copy-on-write pages twice."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), read by the process itself.

    Not `ru_maxrss` from the parent: Linux folds the parent's RSS at fork into the child's maximum, so a
    child started from a process that holds torch would report at least the parent's size.
    """
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


@dataclass
class ChildRun:
    returncode: int
    tree_pss_mib: float  # peak of the PSS summed over the child and its loader workers, sampled
    stdout: str


def run_child(argv: Sequence[str], sample_s: float = 0.25) -> ChildRun:
    """Run a Python benchmark worker in its own process, sampling the memory of its process tree."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    peak_pss = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_pss
        while not stop.is_set():
            peak_pss = max(peak_pss, sum(_pss_kib(p) for p in _tree_pids(proc.pid)))
            stop.wait(sample_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    stop.set()
    sampler.join()
    return ChildRun(proc.returncode, peak_pss / 1024, stdout)


def last_json_line(stdout: str) -> dict:
    """Workers print their result as the last JSON line of their output."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"benchmark worker printed no JSON result; its output was:\n{stdout[-2000:]}")


# ---------------------------------------------------------------------------------------------- report


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; it reads as a plain table in a terminal too."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def command_line() -> str:
    """The command that produced a section, as the user would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    if script.parent == BENCH_DIR:  # run as `python -m bench.NAME`, the way run.sh does
        return " ".join(["python -m", f"bench.{script.stem}", *map(shlex.quote, sys.argv[1:])])
    try:
        script_text = str(script.relative_to(ROOT))
    except ValueError:
        script_text = str(script)
    return " ".join(["python", script_text, *map(shlex.quote, sys.argv[1:])])


def section(body: str, load_before: float) -> str:
    """A section of BENCHMARKS.md: the body, then how it was produced and on what."""
    return (
        f"{body.rstrip()}\n\n"
        f"Command: `{command_line()}`  \n"
        f"Machine: {machine_line()}.  \n"
        f"1-minute load average {load_before:.2f} before, {load_average():.2f} after; "
        f"measured {time.strftime('%Y-%m-%d %H:%M')}.\n"
    )


def update_benchmarks_md(key: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the block between `<!-- bench:KEY -->` and `<!-- /bench:KEY -->` in BENCHMARKS.md."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    doc = path.read_text() if path.exists() else "# cnnlab benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        doc = head + block + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)


# ------------------------------------------------------------------------------------------------ CLI


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny budget: checks that the script runs end to end")
    p.add_argument("--write", action="store_true", help="update this script's section of BENCHMARKS.md")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    return p


def setup(args: argparse.Namespace) -> float:
    """Common start of every benchmark: threads, seeds; returns the load average at the start."""
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    OUT_DIR.mkdir(exist_ok=True)
    return load_average()
