"""The import graph: arrows point only down the declared layers, and there is no cycle.

Every module's imports are read with `ast`, function-level ones included (a lazy import is still an
arrow). A function-level import of a cnnlab module is allowed only where it keeps `cnnlab --help` free
of torch, with a comment saying so on the line or just above. Known exceptions, in files other work is
rewriting, are listed below with the reason; the test fails when one of them disappears (so the list
shrinks with the code) or when a new violation appears.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "cnnlab"

# Bottom to top. A module belongs to the layer of its longest listed prefix; it may import its own layer
# and the ones below, never one above, and the graph as a whole has no cycle.
LAYERS: list[tuple[str, ...]] = [
    # Foundations: errors, names, argument types, devices, collectives, the training settings (torch-free).
    ("cnnlab", "cnnlab.errors", "cnnlab.choices", "cnnlab.argtypes", "cnnlab.texttable", "cnnlab.limits",
     "cnnlab.counting", "cnnlab.device", "cnnlab.collective", "cnnlab.settings", "cnnlab.outfiles"),
    ("cnnlab.data", "cnnlab.models"),
    # Looking at a network without training it.
    ("cnnlab.summary", "cnnlab.diagram", "cnnlab.compare", "cnnlab.catalog", "cnnlab.check"),
    ("cnnlab.checkpoint", "cnnlab.report", "cnnlab.export"),
    ("cnnlab.evaluate", "cnnlab.predict"),
    ("cnnlab.training",),
    ("cnnlab.pictures", "cnnlab.experiments"),
    ("cnnlab.commands", "cnnlab.cli", "cnnlab.__main__"),
]  # fmt: skip

# Arrows that point up or close a cycle, each with its reason, until the code moves (none left: the train
# command's body, which draws report.html, lives in cnnlab/commands/, above training and pictures).
KNOWN_UPWARD: set[tuple[str, str]] = set()

# Function-level imports of cnnlab modules without a torch-free reason, per module: none left (issue #21,
# phase 2). Any module may import a cnnlab module inside a function only with a comment saying how it
# keeps torch out of `cnnlab --help`.
KNOWN_LATE: dict[str, int] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, int, bool]]:
    """(module imported, line, inside a function) for each cnnlab module `name` imports."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    late: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            late |= {id(n) for n in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            # `from pkg import submodule` is an arrow to the submodule, not to the package's __init__.
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        for target in targets:
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target.startswith("cnnlab") and target in MODULES and target not in (name, "cnnlab"):
                found.append((target, node.lineno, id(node) in late))
    return found


def layer(name: str) -> int:
    best, found = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found >= 0, f"{name} is in no layer: add it to LAYERS"
    return found


def test_every_arrow_points_down() -> None:
    upward = {
        (name, target) for name in MODULES for target, _, _ in imports(name) if layer(target) > layer(name)
    }
    assert upward - KNOWN_UPWARD == set(), "imports from a lower layer to a higher one"
    assert KNOWN_UPWARD - upward == set(), "fixed: remove them from KNOWN_UPWARD"


def test_no_import_cycle() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for name in MODULES:
        for target, _, _ in imports(name):
            if (name, target) not in KNOWN_UPWARD:
                edges[name].add(target)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [])


def test_late_imports_only_keep_the_command_line_torch_free() -> None:
    uncommented: dict[str, list[int]] = defaultdict(list)
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _, line, late in imports(name):
            if late and "torch" not in lines[line - 1] + lines[line - 2]:
                uncommented[name].append(line)
    counted = {name: len(lines) for name, lines in uncommented.items()}
    new = {n: uncommented[n] for n in counted if n not in KNOWN_LATE}
    assert new == {}, "function-level imports of cnnlab modules without a torch-free reason (module: lines)"
    assert {n: c for n, c in counted.items() if n in KNOWN_LATE} == KNOWN_LATE, "update KNOWN_LATE"
