"""The bodies of the picture commands: filters, neighbors, activations, occlusion, gradcam, mistakes and
report (their flags: pictures.py). This module imports torch; pictures.py reaches it through `Lazy` once
the arguments have parsed."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from cnnlab import checkpoint, data, models
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.pictures import common, mistakes
from cnnlab.pictures.activations import write_activations
from cnnlab.pictures.gradcam import write_gradcam
from cnnlab.pictures.layers import layer_list
from cnnlab.pictures.occlusion import write_occlusion
from cnnlab.pictures.paper import find_neighbors, picture_side, subset, write_filters, write_neighbors
from cnnlab.pictures.runpage import write_report


def _filters_model(source: str, init: bool, in_channels: int) -> tuple[nn.Module, dict[str, Any] | None]:
    """A trained model from a checkpoint, or with --init an untrained one by name."""
    if init:
        return models.create(source, in_channels=in_channels).eval(), None
    ckpt = checkpoint.load(source)
    return checkpoint.build_model(ckpt), ckpt


def run_filters(args: argparse.Namespace) -> int:
    outputs = common.outputs_of(args, None if args.init else args.source)
    common.check_png(args.output, outputs)
    torch.manual_seed(args.seed)
    model, _ = _filters_model(args.source, args.init, args.in_channels)
    print(f"wrote {write_filters(model, args.output, args.cols, outputs)}")
    return 0


def run_neighbors(args: argparse.Namespace) -> int:
    outputs = common.outputs_of(args, args.checkpoint)
    common.check_png(args.output, outputs)
    device = resolve_device(args.device or "auto")
    net = checkpoint.restore(checkpoint.load(args.checkpoint), device)
    model, aug, stats, ckpt = net.model, net.aug, net.stats, net.ckpt
    train_ds, test_ds = data.load_from_args(args, "train"), data.load_from_args(args, "test")
    found = find_neighbors(
        model, train_ds, test_ds, aug, stats, queries=args.queries, k=args.k, bank_size=args.bank_size,
        batch_size=args.batch_size, device=device, seed=args.seed, amp=net.amp,
    )  # fmt: skip
    side = picture_side(test_ds, aug)
    title = (
        f"{ckpt['model_name']}: {test_ds.name} test images (framed), their {args.k} nearest training images\n"
        "nearest first (Euclidean distance of the last hidden layer's features; AlexNet paper, Figure 4)"
    )
    print(f"wrote {write_neighbors(train_ds, test_ds, found, args.output, side, title, outputs)}")
    for q, d, j in zip(found.query_idx.tolist(), found.dist.tolist(), found.idx.tolist(), strict=True):
        pairs = ", ".join(f"{i} ({x:.3g})" for i, x in zip(j, d, strict=True))
        print(f"test {q}: nearest train images {pairs}")
    return 0


def run_activations(args: argparse.Namespace) -> int:
    outputs = common.outputs_of(args, args.checkpoint, args.image)
    common.check_png(args.output, outputs)  # before the checkpoint is read
    subject = common.load_subject(args.checkpoint, args.device)
    path, found = write_activations(
        subject, args.image, args.output, layer_list(args.layers), args.top, outputs=outputs
    )
    print(f"wrote {path}")
    for layer in found:
        print(f"{layer.name} {layer.shape_text}: most active maps {', '.join(map(str, layer.top))}")
    return 0


def run_occlusion(args: argparse.Namespace) -> int:
    outputs = common.outputs_of(args, args.checkpoint, args.image)
    common.check_png(args.output, outputs)  # before the checkpoint is read
    subject = common.load_subject(args.checkpoint, args.device)
    path, found = write_occlusion(
        subject, args.image, args.output, target=args.class_name, patch=args.patch, stride=args.stride,
        batch_size=args.batch_size, outputs=outputs,
    )  # fmt: skip
    top, left, low = found.lowest()
    print(f"wrote {path}")
    print(
        f"{subject.classes[found.target]}: {common.percent(found.base_prob)} on the whole image, "
        f"{common.percent(low)} at lowest (square at row {top}, column {left}), "
        f"{len(found.tops) * len(found.lefts)} positions"
    )
    return 0


def run_gradcam(args: argparse.Namespace) -> int:
    outputs = common.outputs_of(args, args.checkpoint, *args.images)
    subject = common.load_subject(args.checkpoint, args.device)
    written = write_gradcam(
        subject, args.images, args.output, layer=args.layer, target=args.class_name, outputs=outputs
    )
    for path, found, i in written:
        heat = found.maps[i]
        r, c = divmod(int(heat.argmax()), heat.shape[1])
        print(
            f"wrote {path}: {subject.classes[found.targets[i]]} ({common.percent(found.probs[i])}) at "
            f"{found.layer} {heat.shape[0]}x{heat.shape[1]}, peak at row {r}, column {c}"
        )
    return 0


def run_mistakes(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CnnlabError(f"--count {args.count} must be at least 1")
    outputs = common.outputs_of(args, args.checkpoint)
    out = common.check_png(args.output, outputs)
    subject = common.load_subject(args.checkpoint, args.device)
    ds = data.load_from_args(args, args.split)
    if args.limit is not None and args.limit < len(ds):
        ds = subset(ds, torch.arange(args.limit))
    result = mistakes.evaluate_on(subject, ds, args.views, args.batch_size)
    fig, found = mistakes.mistakes_figure(subject, ds, result, args.count, f"{ds.name} {args.split}")
    print(f"wrote {common.save_figure(fig, out, outputs=outputs)}")
    for m in found:
        print(
            f"#{m.index}: said {subject.classes[m.predicted]} ({common.percent(m.p_predicted)}), "
            f"true {subject.classes[m.true]} ({common.percent(m.p_true)})"
        )
    return 0


def run_report(args: argparse.Namespace) -> int:
    path = write_report(
        args.run_dir, args.output, checkpoint=args.checkpoint, device=args.device, mistakes=args.mistakes,
        queries=args.queries, bank_size=args.bank_size or None, gradcams=args.gradcams, say=print,
        force=args.force, data_dir=args.data_dir, skip_bad_images=args.skip_bad_images,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0
