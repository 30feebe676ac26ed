"""The bodies of `cnnlab eval`, `predict`, `export` and `data` (their flags: runs.py). This module imports
torch; runs.py reaches it through `Lazy` once the arguments have parsed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab import data, outfiles, report
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_checkpoints, public
from cnnlab.export import export_checkpoint, input_shape
from cnnlab.predict import expand_inputs, predict, to_csv


def _print_result(result: dict[str, Any]) -> None:
    def line(label: str, r: dict[str, Any]) -> str:
        return (
            f"{label:<40} top-1 error {100 * r['top1_err']:6.2f}% "
            f"(accuracy {100 * (1 - r['top1_err']):6.2f}%)   top-5 error {100 * r['top5_err']:6.2f}%"
            f"   loss {r['loss']:.4f}"
        )

    print(
        f"{result['dataset']} ({result['split']}, {result['count']} images, views: {result['views']}, "
        f"evaluated in {result['precision']})"
    )
    for p, m in zip(result["checkpoints"], result.get("members", []), strict=False):
        print(line(p, m))
    print(line("ensemble (softmax average)" if "members" in result else result["checkpoints"][0], result))
    print("per-class accuracy:")
    for c, a in zip(result["classes"], result["per_class_acc"], strict=True):
        print(f"  {c:<24} {100 * a:6.2f}%")


def run_eval(args: argparse.Namespace) -> int:
    # Checked before minutes of evaluation: the folder the results go to.
    if args.out is not None:
        outfiles.check_folder(args.out, "--out")  # an empty --out is an error, not the default
    out = Path(args.out) if args.out else Path(args.checkpoints[0]).resolve().parent.parent / "eval"
    outfiles.check_folder(out, "--out")
    # The rule of every command that writes: an existing file only with --force, never an input.
    files = [out / "confusion.png", out / "per_class.csv", out / "eval.json"]
    inputs = [*args.checkpoints, *([args.model.rpartition(":")[0]] if args.model else [])]
    outputs = outfiles.Outputs("--out", args.force, inputs)
    for path in files:
        outputs.claim(path)

    result = evaluate_checkpoints(
        args.checkpoints,
        dataset=args.dataset,
        data_dir=args.data_dir,
        split=args.split,
        views=args.views,
        batch_size=args.batch_size,
        device=args.device,
        limit=args.limit,
        download=args.download,
        skip_bad_images=args.skip_bad_images,
        model=args.model,
    )
    title = f"{result['dataset']} {result['split']}, {result['views']} views"
    confusion = report.confusion_png(result["confusion"], result["classes"], title)
    rows = ["class,accuracy,count"] + [
        f"{c},{a!r},{sum(r)}"
        for c, a, r in zip(result["classes"], result["per_class_acc"], result["confusion"], strict=True)
    ]
    text = json.dumps(public(result), indent=2)
    # All three files or none: a full disk part-way leaves none of them (nor a folder made for them).
    blobs = [confusion, ("\n".join(rows) + "\n").encode(), (text + "\n").encode()]
    outputs.write(dict(zip(files, blobs, strict=True)))
    if args.json:
        print(text)
    else:
        _print_result(result)
        print(f"wrote {out / 'confusion.png'}, {out / 'per_class.csv'} and {out / 'eval.json'}")
    return 0


class _Bar:
    """Progress on stderr: a bar redrawn in place on a terminal, a line per tenth otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        if self.tty:
            filled = 30 * done // total
            end = "\n" if done == total else ""
            self.stream.write(f"\rpredict [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} images{end}")
        elif 10 * done // total > self.shown:
            self.shown = 10 * done // total
            self.stream.write(f"predict: {done}/{total} images\n")
        self.stream.flush()


def run_predict(args: argparse.Namespace) -> int:
    images = expand_inputs(args.images)
    # The rule of every command that writes: an existing file only with --force, never an input (the
    # checkpoint, an image, the network's file), nor a device.
    inputs = [args.checkpoint, *images, *([args.model.rpartition(":")[0]] if args.model else [])]
    outputs = outfiles.Outputs("--csv", args.force, inputs)
    csv_path = outputs.check(args.csv) if args.csv is not None else None
    bar = None if args.no_progress or len(images) <= args.batch_size else _Bar()
    skipped: list[str] = []
    results = predict(
        args.checkpoint, images, top=args.top, device=args.device, batch_size=args.batch_size, progress=bar,
        model=args.model, skip_bad_images=args.skip_bad_images, skipped=skipped,
    )  # fmt: skip
    for reason in skipped:
        print(f"predict: skipped {reason}", file=sys.stderr)
    if not results:
        raise CnnlabError(f"none of the {len(images)} images could be read; nothing to predict")
    if csv_path is not None:
        outputs.write({csv_path: to_csv(results).encode()})  # atomic: an interrupted run leaves no half file
    if args.json:
        print(json.dumps(results, indent=2))
    elif csv_path is not None:
        print(f"wrote {len(results)} rows to {csv_path}")
    else:
        for r in results:
            best = r["top"][0]
            print(f"{r['path']}: {best['class']} ({100 * best['prob']:.1f}%)")
            for t in r["top"][1:]:
                print(f"    {t['class']:<24} {100 * t['prob']:5.1f}%")
    return 0


def run_export(args: argparse.Namespace) -> int:
    path, ckpt = export_checkpoint(
        args.checkpoint, args.format, args.output, force=args.force, model_spec=args.model
    )
    print(
        f"wrote {path} ({args.format}, {path.stat().st_size / 1e6:.1f} MB): input float32 "
        f"{input_shape(ckpt)} normalised as in training, output logits [N, {int(ckpt['num_classes'])}]; "
        "classes and mean/std in its metadata"
    )
    return 0


def _describe(ds: data.ArrayDataset | data.FolderDataset) -> str:
    if isinstance(ds, data.ArrayDataset):
        c, h, w = ds.images.shape[1:]
        return f"{len(ds):,} images {c}x{h}x{w}"
    skipped = f", {len(ds.skipped)} unreadable skipped" if ds.skipped else ""
    return f"{len(ds):,} image files{skipped}"


def _vector(t: Any, digits: int = 4) -> str:
    return "[" + ", ".join(f"{float(v):.{digits}f}" for v in t) + "]"


def run_data(args: argparse.Namespace) -> int:
    """`cnnlab data`: what a data set holds, where it was found, and (with --stats) what training will use."""
    if args.list:
        for name in data.names():
            print(name)
        return 0
    train = data.load_from_args(args, "train")
    test = data.load_from_args(args, "test")
    print(f"{train.name}  (from {train.source})")
    print(f"  train: {_describe(train)}")
    print(f"  test:  {_describe(test)}")
    shown = ", ".join(train.classes[:12]) + (", ..." if len(train.classes) > 12 else "")
    print(f"  classes ({len(train.classes)}): {shown}")
    for ds in (train, test):
        if isinstance(ds, data.FolderDataset):
            for path in ds.skipped[: args.show_skipped]:
                print(f"  skipped {path}: {ds.skip_reasons[path]}")
    if args.stats:
        stats = data.compute_stats(train)
        print(f"  statistics of {stats.count:,} training images, in [0, 1] pixel units:")
        print(f"    mean {_vector(stats.mean)}   std {_vector(stats.std)}")
        print(f"    PCA lighting: eigenvalues {_vector(stats.eigvals, 6)}")
        for i in range(stats.channels):
            print(f"      p{i + 1} = {_vector(stats.eigvecs[:, i])}")
    return 0
