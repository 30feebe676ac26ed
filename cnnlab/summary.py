"""Look at a network before training it: the Keras-style layer table, FLOPs, memory, size formulas.

`layer_table` runs one forward pass with hooks on every leaf module and records, in execution order, each
layer's output shape, parameters, FLOPs and output bytes, plus the worked output-size formula
floor((in + 2*pad - kernel) / stride) + 1 for convolutions and pools. Big nets are built
on PyTorch's meta device, so the pass computes shapes only and takes milliseconds even for VGG-19. The FLOP
convention (a multiply-add counts 2) is in `cnnlab.counting`. Functional ops inside a block's forward
(GoogLeNet's concatenation, the two-tower exchange) cost 0 FLOPs, but the block gets its own row when it
makes a new tensor, because that tensor takes memory.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from cnnlab import limits, models, receptive
from cnnlab.counting import first_tensor, layer_flops, layer_formula, layer_macs, misfit_note
from cnnlab.errors import CnnlabError
from cnnlab.models.user import is_user_spec, load_user_model, split_spec
from cnnlab.texttable import render

T = TypeVar("T")


@dataclass(frozen=True)
class LayerRow:
    """One executed leaf layer (or a block whose forward made a new tensor, e.g. a concatenation)."""

    name: str
    type: str
    output_shape: tuple[int, ...]  # one sample, without the batch dimension
    params: int
    trainable: int
    param_bytes: int
    flops: int  # per image, a multiply-add counts 2
    activation_bytes: int  # the output at the traced batch size, float32
    shares_input: bool = False  # in-place op or view: no new memory, left out of the total
    formula: str | None = None
    note: str | None = None
    ran: bool = True  # False for parameters the forward never used (GoogLeNet's auxiliary heads in eval)
    # Receptive field and jump (effective stride) of one output unit, in input pixels, (height, width);
    # None where the output has no spatial layout (fully connected layers, a flattened tensor).
    field: tuple[int, int] | None = None
    jump: tuple[int, int] | None = None
    field_smallest: tuple[int, int] | None = None  # a block joining branches: its narrowest branch's field
    macs: int = 0  # multiply-adds of a weight layer (conv, linear) per image; 0 for every other layer


@dataclass(frozen=True)
class Totals:
    params: int
    trainable: int
    flops: int  # per image
    activation_bytes: int  # at the traced batch size, outputs that allocate memory
    param_bytes: int
    macs: int = 0  # multiply-adds of the conv and linear layers per image (the VGG/GoogLeNet papers' unit)
    params_run: int = 0  # parameters of the layers the eval forward runs (no auxiliary heads)


# ---------------------------------------------------------------------------------------------------------
# The traced table


@dataclass
class Trace:
    rows: list[LayerRow]
    error: CnnlabError | None = None  # set when the forward failed; rows hold the layers that ran


def _shares(out: torch.Tensor, inp: torch.Tensor | None) -> str | None:
    """'in-place' or 'view' when `out` reuses `inp`'s memory (by identity: meta tensors have no address)."""
    if inp is None:
        return None
    if out is inp:
        return "in-place"
    base = inp._base if inp._base is not None else inp
    return "view" if out._base is not None and out._base is base else None


def _own_params(m: nn.Module, seen: set[int]) -> tuple[int, int, int]:
    """(params, trainable, bytes) of `m`'s own parameters not counted before (shared modules count once)."""
    n = t = b = 0
    for p in m.parameters(recurse=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        n += p.numel()
        t += p.numel() if p.requires_grad else 0
        b += p.numel() * p.element_size()
    return n, t, b


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class _Recorder:
    """The forward hooks of `trace`: one LayerRow per module that produced a tensor of its own."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.rows: list[LayerRow] = []
        self.seen: set[int] = set()
        self.last: Any = None  # the last tensor recorded
        self.spatial = False  # a layer with a size formula was seen (the first one reads the image)
        self.modules = list(model.named_modules())
        self.leaves = {id(m) for _, m in self.modules if not any(m.children())}
        self.fields = receptive.FieldTracker()

    def hook(self, name: str, m: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self.fields.paused = True  # the hook's own tensor ops are not the model's
        try:
            self.record(name, m, args, output)
        finally:
            self.fields.paused = False

    def _formula(self, m: nn.Module, inp: torch.Tensor | None, leaf: bool) -> tuple[Any, str | None]:
        """The layer's size formula and the note it gives (the first layer's misfit, the groups)."""
        formula = note = None
        worked = layer_formula(m, inp) if (leaf and inp is not None) else None
        if worked is not None:
            formula = worked[0]
            if not self.spatial and isinstance(m, nn.Conv2d) and inp is not None:
                note = misfit_note(m, int(inp.shape[-2]), worked[1])  # the layer that reads the image
            self.spatial = True
        if isinstance(m, nn.Conv2d) and m.groups > 1 and note is None:
            note = f"groups={m.groups}: each map reads only its own group's inputs (the towers, sec. 3.2)"
        return formula, note

    def record(self, name: str, m: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        out, inp = first_tensor(output), first_tensor(args)
        leaf = id(m) in self.leaves
        if out is None or (not leaf and (m is self.model or out is self.last or _shares(out, self.last))):
            return  # a container that only passed its last layer's tensor on (or a view of it)
        n, t, b = _own_params(m, self.seen)
        formula, note = self._formula(m, inp, leaf)
        shared = _shares(out, inp)
        if shared:
            note = shared
        elif not leaf:
            note = "block output: its forward joins its layers' outputs (e.g. concatenation)"
        seen_by = self.fields.of(out) if out.dim() >= 3 else None  # flattened: no spatial field
        if seen_by is not None and seen_by.smallest is not None and not shared:
            join = (
                "receptive field narrowest..widest of the branches it joins: the block's field is the "
                "widest (a unit reading all its channels sees that far)"
            )
            note = f"{note}; {join}" if note else join
        self.rows.append(
            LayerRow(
                name=name,
                type=type(m).__name__,
                output_shape=tuple(out.shape[1:]),
                params=n,
                trainable=t,
                param_bytes=b,
                flops=layer_flops(m, inp, out) if (leaf and inp is not None) else 0,
                activation_bytes=out.numel() * out.element_size(),
                shares_input=shared is not None,
                formula=formula,
                note=note,
                field=seen_by.size if seen_by else None,
                jump=seen_by.jump if seen_by else None,
                field_smallest=seen_by.smallest if seen_by else None,
                macs=layer_macs(m, inp, out) if (leaf and inp is not None) else 0,
            )
        )
        self.last = out

    def add_unrun(self) -> None:
        """Parameters the forward never touched (auxiliary heads run only in training): still counted."""
        for name, m in self.modules:
            n, t, b = _own_params(m, self.seen)
            if n:
                self.rows.append(
                    LayerRow(
                        name, type(m).__name__, (), n, t, b, 0, 0, note="not run in eval mode", ran=False
                    )
                )


def _forward(
    model: nn.Module, rec: _Recorder, input_size: tuple[int, int, int], batch_size: int, device: torch.device
) -> CnnlabError | None:
    """One eval-mode forward of a zero batch; the user's error it met, if any."""
    try:
        model.eval()
        x = torch.zeros(batch_size, *input_size, device=device)
        with torch.no_grad(), rec.fields:
            rec.fields.set(x, receptive.INPUT)
            model(x)
    except CnnlabError as exc:
        return exc
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if device.type == "meta" and ("meta" in msg.lower() or isinstance(exc, NotImplementedError)):
            raise  # the model cannot run on meta; the caller retries on the CPU
        after = f" after layer '{rec.rows[-1].name}'" if rec.rows else ""
        size = "x".join(map(str, input_size))
        return CnnlabError(
            f"input {size} does not fit this network{after}: {msg}; try its default --input-size"
        )
    return None


def trace(model: nn.Module, input_size: tuple[int, int, int], batch_size: int = 1) -> Trace:
    """Run one eval-mode forward with hooks; on a failure keep the rows so far and the error."""
    rec = _Recorder(model)
    handles = [
        m.register_forward_hook(lambda mod, a, o, name=name: rec.hook(name, mod, a, o))
        for name, m in rec.modules
        if name
    ]
    was_training = model.training
    device = model_device(model)
    # A model that could not be built on meta runs for real: its input must fit.
    limits.check_input_batch(batch_size, input_size, device)
    try:
        error = _forward(model, rec, input_size, batch_size, device)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if error is None:
        rec.add_unrun()
    return Trace(rec.rows, error)


def trace_on_meta(
    name: str,
    num_classes: int,
    in_channels: int,
    options: dict[str, Any],
    input_size: tuple[int, int, int],
    batch_size: int = 1,
) -> Trace | None:
    """`trace` of zoo model `name` built on the meta device (shapes only, nothing allocated), for memory
    estimates made before the real model exists; None when the model cannot run on meta (the real forward
    then reports its own errors). Bad names or switches raise CnnlabError."""
    try:
        with torch.device("meta"):
            shape = models.create_from(name, num_classes, in_channels, options)
        return trace(shape, input_size, batch_size)
    except CnnlabError:
        raise
    except Exception:
        return None


def layer_table(model: nn.Module, input_size: tuple[int, int, int], batch_size: int = 1) -> list[LayerRow]:
    """One row per executed leaf layer in execution order; raises the model's `CnnlabError` on a bad input."""
    result = trace(model, input_size, batch_size)
    if result.error is not None:
        raise result.error
    return result.rows


def totals(rows: list[LayerRow]) -> Totals:
    return Totals(
        params=sum(r.params for r in rows),
        trainable=sum(r.trainable for r in rows),
        flops=sum(r.flops for r in rows),
        activation_bytes=sum(r.activation_bytes for r in rows if not r.shares_input),
        param_bytes=sum(r.param_bytes for r in rows),
        macs=sum(r.macs for r in rows),
        params_run=sum(r.params for r in rows if r.ran),
    )


# ---------------------------------------------------------------------------------------------------------
# Building named models cheaply


def parse_input_size(text: str) -> tuple[int, int, int]:
    """'3x227x227', '227x227' or '227' (3 channels assumed) -> (C, H, W)."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = [3, parts[0], parts[0]]
    elif len(parts) == 2:
        parts = [3, *parts]
    if len(parts) != 3 or min(parts) < 1:
        raise CnnlabError(f"bad --input-size {text!r}: write CxHxW such as 3x227x227 (or one side: 227)")
    return (parts[0], parts[1], parts[2])


# A user's network carries no default input size: ImageNet's, unless --input-size says otherwise.
USER_INPUT_SIZE = (3, 224, 224)


def check_name(name: str) -> None:
    """A zoo name, or a user's `file.py:Name` / `pkg.mod:attr` whose file exists; else CnnlabError."""
    if not is_user_spec(name):
        models.info(name)
        return
    where, _ = split_spec(name)
    if where.endswith(".py") and not Path(where).is_file():
        raise CnnlabError(f"{where}: no such Python file (write path/to/file.py:ClassName)")


def describe(name: str) -> str:
    """'name: description (paper)' for the first line of a command's output."""
    if is_user_spec(name):
        return f"{name}: your network (loading it ran your code)"
    info = models.info(name)
    return f"{info.name}: {info.description} ({info.paper})"


def default_input_size(name: str) -> tuple[int, int, int]:
    if is_user_spec(name):
        return USER_INPUT_SIZE
    info = models.info(name)
    return (info.in_channels, info.input_size, info.input_size)


def build(name: str, num_classes: int = 1000, in_channels: int | None = None, meta: bool = True) -> nn.Module:
    """`models.create` on the meta device (no memory, no random init: instant even for VGG-19); the input
    channels default to the model's own (LeNet-5: 1), as in `models.create`.

    A model that cannot be built there (one that places its towers on devices) is built on the CPU.
    A user's network (`file.py:Name`, `pkg.mod:attr`) is built by its own code, on the CPU, as written:
    `num_classes` and `in_channels` are the constructor's business there.
    """
    if is_user_spec(name):
        return load_user_model(name)
    if meta:
        try:
            with torch.device("meta"):
                return models.create(name, num_classes=num_classes, in_channels=in_channels)
        except CnnlabError:
            raise
        except Exception:
            pass
    return models.create(name, num_classes=num_classes, in_channels=in_channels)


def run_named(name: str, num_classes: int, in_channels: int, fn: Callable[[nn.Module], T]) -> T:
    """`fn(model)` on the meta device if the model runs there, else (towers placed on devices) on the CPU."""
    model = build(name, num_classes, in_channels)
    if model_device(model).type == "meta":
        try:
            return fn(model)
        except (RuntimeError, NotImplementedError):
            model = build(name, num_classes, in_channels, meta=False)
    return fn(model)


def trace_named(
    name: str, input_size: tuple[int, int, int], num_classes: int = 1000, batch_size: int = 1
) -> Trace:
    return run_named(name, num_classes, input_size[0], lambda m: trace(m, input_size, batch_size))


def count_params(name: str, num_classes: int = 1000, in_channels: int | None = None) -> int:
    """Parameters of zoo model `name`, at its own input channels unless `in_channels` is given."""
    channels = models.info(name).in_channels if in_channels is None else in_channels
    return sum(p.numel() for p in build(name, num_classes, channels).parameters())


# ---------------------------------------------------------------------------------------------------------
# Text output


def fmt_count(n: float) -> str:
    """12, 3.4K, 56.7M, 1.43G."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}" if n / div < 100 else f"{n / div:.1f}{unit}"
    return f"{n:g}"


def fmt_bytes(n: float) -> str:
    for div, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


def field_cell(r: LayerRow) -> str:
    """The receptive-field column: '163', or 'narrowest..widest' for a block joining branches."""
    if r.field is None:
        return ""
    if r.field_smallest is not None:
        return f"{receptive.text(r.field_smallest)}..{receptive.text(r.field)}"
    return receptive.text(r.field)


def format_table(rows: list[LayerRow], batch_size: int = 1) -> str:
    """The Keras-style table, then totals and the notes (numbered [n] in the last column)."""
    notes: dict[str, int] = {}  # note text -> its number; a note shared by many rows is printed once
    body = []
    for r in rows:
        mem = fmt_bytes(r.activation_bytes) + (" *" if r.shares_input else "") if r.ran else "-"
        extra = r.formula or ""
        if r.note and not r.shares_input:
            number = notes.setdefault(r.note, len(notes) + 1)
            extra = f"{extra} [{number}]".strip()
        shape = "x".join(map(str, r.output_shape)) if r.ran else "-"
        jump = receptive.text(r.jump) if r.jump is not None else ""
        body.append(
            [r.name, r.type, shape, f"{r.params:,}", fmt_count(r.flops), mem, field_cell(r), jump, extra]
        )
    header = ["layer", "type", "output", "params", "FLOPs", f"act. (B={batch_size})", "field", "jump"]
    header.append("output size")
    t = totals(rows)
    lines = [
        render(header, body, right={3, 4, 5, 6, 7}),
        f"total params: {t.params:,} (trainable {t.trainable:,}, non-trainable {t.params - t.trainable:,})",
    ]
    if t.params_run != t.params:
        lines.append(
            f"params the eval forward uses: {t.params_run:,} (without the {t.params - t.params_run:,} of "
            "the layers marked '-', which run in training only: GoogLeNet's auxiliary classifiers)"
        )
    lines += [
        f"FLOPs per image: {fmt_count(t.flops)} (a multiply-add counts 2; x{batch_size} per batch); "
        f"multiply-adds of the conv and fc layers: {fmt_count(t.macs)}",
        f"activation memory at batch {batch_size}: {fmt_bytes(t.activation_bytes)} (float32 layer outputs)",
        f"parameter memory: {fmt_bytes(t.param_bytes)}",
        "field, jump: the input pixels one output unit sees (receptive field, per side) and the input "
        "pixels between neighbouring units (effective stride)",
    ]
    if any(r.shares_input for r in rows):
        lines.append("* in-place or a view of its input: no new memory, not in the activation total")
    return "\n".join(lines + [f"[{n}] {text}" for text, n in notes.items()])


def table_json(name: str, input_size: tuple[int, int, int], rows: list[LayerRow], batch_size: int) -> str:
    """`summary --json`: every row's fields (receptive field and jump as [height, width]) and the totals."""
    doc = {
        "model": name,
        "input_size": list(input_size),
        "batch_size": batch_size,
        "layers": [dataclasses.asdict(r) for r in rows],
        "totals": dataclasses.asdict(totals(rows)),
    }
    return json.dumps(doc, indent=1)
