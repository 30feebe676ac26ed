"""The bodies of `cnnlab summary`, `diagram`, `compare` and `check` (their flags: networks.py). This module
imports torch; cnnlab/commands/networks.py reaches it through `Lazy` once the arguments have parsed."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from torch import nn

from cnnlab import models, outfiles
from cnnlab.check import check, format_report, load_target
from cnnlab.compare import bar_chart_png, compare, format_rows
from cnnlab.diagram import unwrap_error, write
from cnnlab.errors import CnnlabError
from cnnlab.models.user import parse_kwargs
from cnnlab.summary import (
    check_name,
    default_input_size,
    describe,
    format_table,
    parse_input_size,
    run_named,
    table_json,
    trace_named,
)


def run_summary(args: argparse.Namespace) -> int:
    check_name(args.name)  # unknown names fail here with the list of valid ones
    size = parse_input_size(args.input_size) if args.input_size else default_input_size(args.name)
    if args.batch_size < 1 or args.num_classes < 1:
        raise CnnlabError("--batch-size and --num-classes must be at least 1")
    result = trace_named(args.name, size, args.num_classes, args.batch_size)
    if getattr(args, "json", False):
        if result.error is not None:
            raise result.error
        print(table_json(args.name, size, result.rows, args.batch_size))
        return 0
    print(f"{describe(args.name)}; input {'x'.join(map(str, size))}")
    if result.rows:
        print(format_table(result.rows, args.batch_size))
    if result.error is not None:
        raise result.error
    return 0


def run_diagram(args: argparse.Namespace) -> int:
    check_name(args.name)
    size = parse_input_size(args.input_size) if args.input_size else default_input_size(args.name)

    def draw(model: nn.Module) -> Path:
        try:
            return write(model, size, args.output, args.depth, say=print, force=args.force)
        except RuntimeError as exc:
            found = unwrap_error(exc)
            if isinstance(found, CnnlabError):
                raise found from None
            raise

    print(f"wrote {run_named(args.name, args.num_classes, size[0], draw)}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        raise CnnlabError("--batch-size and --steps must be at least 1, --warmup at least 0")
    files = ("compare.json", "compare.txt", "compare.png")
    # The rule of every command that writes, checked before minutes of timing: an existing file only
    # with --force, never a network file being compared.
    outputs = outfiles.Outputs("--out", args.force, [n.rpartition(":")[0] for n in args.names if ":" in n])
    if args.out is not None:
        outfiles.check_folder(args.out, "--out")
        for name in files:
            outputs.claim(Path(args.out) / name)
    size = parse_input_size(args.input_size) if args.input_size else None

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    rows = compare(
        args.names,
        size,
        args.batch_size,
        args.num_classes,
        args.device,
        timed=not args.no_timing,
        warmup=args.warmup,
        steps=args.steps,
        progress=say,
    )
    table = format_rows(rows)
    doc = json.dumps([dataclasses.asdict(r) for r in rows], indent=2)
    if args.out:
        out = Path(args.out)
        # All three files or none (a full disk part-way leaves none of them, nor the folder).
        blobs = [(doc + "\n").encode(), (table + "\n").encode(), bar_chart_png(rows)]
        outputs.write({out / name: blob for name, blob in zip(files, blobs, strict=True)})
    print(doc if args.json else table)
    if args.out:
        say(f"wrote {Path(args.out) / 'compare.txt'}, compare.json and compare.png")  # after the table
    return 0


def run_check(args: argparse.Namespace) -> int:
    models.info(args.against)  # an unknown reference fails before the user's code runs
    kwargs = parse_kwargs(args.kwargs or [])
    size = parse_input_size(args.input_size) if args.input_size else None
    if args.num_classes is not None and args.num_classes < 1:
        raise CnnlabError("--num-classes must be at least 1")
    model = load_target(args.target, kwargs)
    report = check(
        model, args.against, size, num_classes=args.num_classes, init=args.init, target=args.target
    )
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 1 if report.deviations else 0
