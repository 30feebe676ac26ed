"""The architecture as a picture, like Keras' `plot_model`.

torchview records the forward pass (on the meta device: shapes only, no arithmetic) and builds a graphviz
graph; we relabel its boxes with the layer names users know (conv1, features.0, inception3a.branch2) and
the layer's settings, and let Debian's graphviz `dot` lay it out as SVG or PNG.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab import extras, limits, outfiles
from cnnlab.counting import geometry, is_lrn
from cnnlab.errors import CnnlabError, first_line
from cnnlab.summary import (
    layer_table,
    model_device,
)

FORMATS = ("svg", "png")


def _settings(m: nn.Module) -> str:
    """The numbers a reader of the paper's table looks for: kernel/stride, pad, groups, units."""
    g = geometry(m)
    if isinstance(m, nn.Conv2d) and g is not None:
        k, s, p = g.kernel, g.stride, g.padding
        text = f"{m.out_channels} {k[0]}x{k[1]}/{s[0]}" + (f" pad {p[0]:g}" if p != (0, 0) else "")
        return text + (f" groups {m.groups}" if m.groups > 1 else "")
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{m.kernel_size}/{m.stride}"
    if isinstance(m, nn.Linear):
        return f"{m.out_features} units"
    if is_lrn(m):
        return f"n={m.size} alpha={m.alpha:g} beta={m.beta:g} k={m.k:g}"
    if isinstance(m, nn.Dropout):
        return f"p={m.p:g}"
    return ""


def _shape(shapes: list[tuple[int, ...]]) -> str:
    return ", ".join("x".join(map(str, s[1:])) or "scalar" for s in shapes)  # drop the batch dimension


def _walk(hierarchy: Any) -> Iterator[Any]:
    if isinstance(hierarchy, dict):
        for key, children in hierarchy.items():
            yield key
            for child in children:
                yield from _walk(child)
    else:
        yield hierarchy


def _module_name(entry: Any, names: dict[int, str]) -> str | None:
    """The registered name of a hierarchy entry's module ({ModuleNode: children}), else None."""
    if not isinstance(entry, dict):
        return None
    unit = getattr(next(iter(entry)), "compute_unit_id", None)
    return (names.get(unit) or None) if isinstance(unit, int) else None


def _regroup(hierarchy: dict[Any, list[Any]], names: dict[int, str]) -> dict[int, str]:
    """Name the containers the forward builds on the fly after the block they are cut from, and put the
    rest of that block in their box.

    `self.classifier[:-1](x)` then `self.classifier[-1](...)` (the paper nets' embed and forward) make
    torchview draw an unnamed Sequential holding fc6 ... drop7, with fc8 outside it. The slice becomes
    "classifier" and takes fc8 in. Returns node id -> the members' span ("fc6 ... drop7"), for the box
    drawn when the block is not opened (--depth at its level)."""
    spans: dict[int, str] = {}
    ((_, children),) = hierarchy.items()
    i = 0
    while i < len(children):
        entry = children[i]
        i += 1
        if not isinstance(entry, dict):
            continue
        spans.update(_regroup(entry, names))
        ((node, members),) = entry.items()
        if getattr(node, "compute_unit_id", None) in names:
            continue
        inside = [n for n in map(lambda m: _module_name(m, names), members) if n]
        parent = inside[0].rpartition(".")[0] if inside else ""
        if not parent or not all(n.startswith(parent + ".") for n in inside):
            continue
        node.name = parent
        short = [n[len(parent) + 1 :] for n in inside]
        spans[id(node)] = short[0] if len(short) == 1 else f"{short[0]} ... {short[-1]}"
        # Later siblings from the same block (fc8) join it; tensors between them are not drawn.
        j = i
        while j < len(children):
            name = _module_name(children[j], names)
            if name is None and not isinstance(children[j], dict):
                j += 1
                continue
            if name is None or not name.startswith(parent + "."):
                break
            members.append(children.pop(j))
    return spans


def graph(model: nn.Module, input_size: tuple[int, int, int], depth: int | None = None) -> Any:
    """A `graphviz.Digraph` of `model` (built on any device; meta is fastest) with our labels."""
    extras.require("cnnlab diagram", "torchview", "graphviz")
    from torchview import draw_graph
    from torchview.computation_node import FunctionNode, ModuleNode, TensorNode

    names = {id(m): name for name, m in model.named_modules()}
    modules = {id(m): m for m in model.modules()}
    depth_limit: float = float("inf") if depth is None else depth
    # Heads that run only in training (GoogLeNet's auxiliary classifiers, its section 5) are part of the
    # architecture: draw the training-mode forward for such a net (batch 2: batch norm's training-mode
    # statistics need more than one value), the eval-mode one otherwise.
    train_only = any(not r.ran for r in layer_table(model, input_size))
    g = draw_graph(
        model,
        input_size=(2 if train_only else 1, *input_size),
        device=model_device(model),
        depth=depth_limit,
        mode="train" if train_only else "eval",
        expand_nested=True,
        graph_name=type(model).__name__,
    )

    def label(node: Any) -> str:
        if isinstance(node, TensorNode):
            title, rows = node.name.replace("-tensor", ""), [_shape([node.tensor_shape])]
        elif isinstance(node, ModuleNode) and node.compute_unit_id in modules:
            m = modules[node.compute_unit_id]
            title = f"<B>{html.escape(names.get(node.compute_unit_id) or type(m).__name__)}</B>"
            rows = [" ".join(filter(None, [type(m).__name__, _settings(m)])), _shape(node.output_shape)]
        elif isinstance(node, ModuleNode):  # a container the forward builds on the fly (not a submodule)
            title = f"<B>{html.escape(node.name)}</B>"
            rows = [r for r in (spans.get(id(node)), _shape(node.output_shape)) if r]
        else:
            assert isinstance(node, FunctionNode)
            title, rows = html.escape(node.name), [_shape(node.output_shape)]
        # The first cell holds our own markup (bold); the others are escaped text.
        cells = f"<TR><TD>{title}</TD></TR>" + "".join(f"<TR><TD>{html.escape(r)}</TD></TR>" for r in rows)
        return f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">{cells}</TABLE>>'

    # Name the dashed cluster boxes after the block (features, inception3a) instead of its class.
    spans = _regroup(g.node_hierarchy, names)
    for node in _walk(g.node_hierarchy):
        if isinstance(node, ModuleNode) and node.compute_unit_id in names:
            node.name = names[node.compute_unit_id] or type(modules[node.compute_unit_id]).__name__
    g.get_node_label = label  # type: ignore[method-assign]  # torchview calls it while rendering
    g.visual_graph.body.clear()
    g.node_set, g.edge_list = set(), []
    g.fill_visual_graph()
    g.visual_graph.graph_attr.pop("size", None)  # natural size: torchview's cap makes big nets unreadable
    return g.visual_graph


# Boxes a diagram draws in full when no --depth is given. GoogLeNet's 162 made a 1107x8501-px picture; past
# this many the blocks are folded, one depth at a time, until it fits (or one box per top-level block).
MAX_BOXES = 100


def _boxes(g: Any) -> int:
    return sum(1 for line in g.body if "[label=" in line and "->" not in line)


def fitting_graph(
    model: nn.Module, input_size: tuple[int, int, int], depth: int | None = None
) -> tuple[Any, int | None]:
    """`graph` at `depth`; without one, every layer unless that is more than MAX_BOXES boxes, then the
    deepest depth that fits. Returns the graph and the depth drawn (None: every layer)."""
    g = graph(model, input_size, depth)
    if depth is not None or _boxes(g) <= MAX_BOXES:
        return g, depth
    for folded in (3, 2):
        g = graph(model, input_size, folded)
        if _boxes(g) <= MAX_BOXES:
            return g, folded
    return graph(model, input_size, 1), 1


def write(
    model: nn.Module,
    input_size: tuple[int, int, int],
    path: str | Path,
    depth: int | None = None,
    say: Callable[[str], None] | None = None,
    force: bool = False,
) -> Path:
    """Draw `model` into `path` (.svg or .png) with graphviz's `dot`; an existing file is replaced only
    with `force`."""
    path = outfiles.check_output(path, "-o", force)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise CnnlabError(f"cannot write {path.name}: the diagram file must end in .svg or .png")
    if depth is not None and depth < 0:
        raise CnnlabError(f"--depth {depth} must be 0 or more (0: the model as one box)")
    extras.require("cnnlab diagram", "torchview", "graphviz")
    if shutil.which("dot") is None:
        raise CnnlabError("graphviz's `dot` program is not installed: apt-get install graphviz")
    # torchview draws a real random input of this size (on the CPU) before moving it to the model's device.
    c, h, w = input_size
    limits.check_fits(4 * c * h * w, f"a {c}x{h}x{w} input", "give a smaller --input-size")
    try:
        g, drawn = fitting_graph(model, input_size, depth)
    except CnnlabError:
        raise
    except Exception as exc:  # torchview cannot trace every network (a user's own, say): one line
        found = unwrap_error(exc)
        if isinstance(found, CnnlabError):
            raise found from None
        for _ in range(16):  # torchview wraps the forward's own error: name that one
            found = found.__cause__ or found.__context__ or found
        size = "x".join(map(str, input_size))
        raise CnnlabError(
            f"cannot draw {type(model).__name__}: tracing its forward pass on a {size} input failed "
            f"({type(found).__name__}: {first_line(found)})"
        ) from None
    data = g.pipe(format=fmt)
    written = outfiles.write_file(path, data, "-o", force)
    if drawn != depth and say is not None:
        say(f"{written}: folded to --depth {drawn} to stay readable (give --depth 9 for every layer)")
    return written


def unwrap_error(exc: BaseException) -> BaseException:
    """torchview re-raises a forward's error as RuntimeError; find the model's own CnnlabError inside."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, CnnlabError):
            return cause
        cause = cause.__cause__
    return exc
