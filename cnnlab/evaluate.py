"""Top-1/top-5 error, multi-view testing and ensembles (AlexNet paper sections 4.1 and 6).

The paper's test: average the softmax over ten 224x224 patches (corners, centre, and their mirrors), and
average the softmax of several nets for an ensemble ("1 CNN 18.2%, 5 CNNs 16.4%, 7 CNNs 15.4%" top-5
error). `evaluate` does both for models that share a preprocessing; `evaluate_checkpoints` runs each
checkpoint with its own preprocessing and averages their softmax afterwards, so any runs on the same data
set combine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab import checkpoint, collective, data
from cnnlab.device import autocast, precision_words, resolve_device
from cnnlab.errors import CnnlabError


class Accumulator:
    """Sums over batches of softmax outputs, kept on the device (no host sync per batch).

    loss: mean negative log of the (view- and net-averaged) probability of the true class;
    top-k error: fraction whose true class is not among the k most probable (k capped at the class count).
    """

    def __init__(self, num_classes: int, device: torch.device, keep_probs: bool = False) -> None:
        self.k, self.device, self.keep = num_classes, device, keep_probs
        self.nll = torch.zeros((), dtype=torch.float64, device=device)
        self.top1 = torch.zeros((), dtype=torch.int64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        self.count = 0
        self.probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, probs: torch.Tensor, y: torch.Tensor) -> None:
        probs = probs.float()
        # Summed in float64: the total then does not depend on how the images were batched (training's
        # evaluation batches and `cnnlab eval`'s differ), so every reader gets the same loss.
        self.nll -= probs.gather(1, y[:, None]).double().clamp_min(1e-12).log().sum()
        top = probs.topk(min(5, self.k), dim=1).indices
        hit = top == y[:, None]
        self.top1 += hit[:, 0].sum()
        self.top5 += hit.any(1).sum()
        self.confusion += torch.bincount(y * self.k + top[:, 0], minlength=self.k * self.k)
        self.count += int(y.shape[0])
        if self.keep:
            self.probs.append(probs.cpu())
            self.labels.append(y.cpu())

    def result(self, reduce: bool = False) -> dict[str, Any]:
        sums = torch.stack(
            [
                self.nll,
                self.top1.double(),
                self.top5.double(),
                torch.tensor(float(self.count), dtype=torch.float64, device=self.device),
            ]
        )
        confusion = self.confusion.clone()
        if reduce:  # distributed: every rank evaluated its own shard
            collective.all_reduce_sum(sums)
            collective.all_reduce_sum(confusion)
        nll, top1, top5, n = sums.tolist()
        if n == 0:
            raise CnnlabError("nothing to evaluate: the data set is empty")
        matrix = confusion.view(self.k, self.k).cpu()
        per_class_n = matrix.sum(1)
        per_class = (matrix.diagonal().double() / per_class_n.clamp_min(1)).tolist()
        out: dict[str, Any] = {
            "count": int(n),
            "loss": nll / n,
            "top1_err": 1.0 - top1 / n,
            "top5_err": 1.0 - top5 / n,
            "confusion": matrix.tolist(),
            "per_class_acc": [
                a if c else float("nan") for a, c in zip(per_class, per_class_n.tolist(), strict=True)
            ],
        }
        if self.keep:
            out["probs"] = torch.cat(self.probs) if self.probs else torch.zeros(0, self.k)
            out["labels"] = torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.int64)
        return out


def metrics_from_probs(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """The same numbers as `evaluate` for precomputed probabilities (e.g. an ensemble's average)."""
    acc = Accumulator(probs.shape[1], torch.device("cpu"), keep_probs=True)
    acc.update(probs, labels)
    return acc.result()


@torch.no_grad()
def view_probs(
    model: nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None = None, channels_last: bool = False
) -> torch.Tensor:
    """Softmax of `model` averaged over the views of x [V, B, C, H, W] -> [B, K] (one forward pass)."""
    v, b = x.shape[:2]
    flat = x.flatten(0, 1)
    if channels_last:
        flat = flat.contiguous(memory_format=torch.channels_last)
    with autocast(amp_dtype, x.device.type):
        logits = model(flat)
    return torch.softmax(logits.float(), dim=1).view(v, b, -1).mean(0)


@torch.no_grad()
def evaluate(
    model: nn.Module | Sequence[nn.Module],
    loader: Any,
    device: torch.device | str,
    keep_probs: bool = True,
    amp: torch.dtype | None = None,
) -> dict[str, Any]:
    """loss, top-1/top-5 error, per-class accuracy, confusion matrix (and probabilities) over `loader`.

    `loader` yields evaluation batches x [V, B, C, H, W] (V views, averaged), y [B]. Several models average
    their (view-averaged) softmax, the paper's ensemble; the result then also has `members`, one result
    per model. A sharded loader (torchrun: each rank its shard) has its sums reduced over the ranks (no
    probabilities); an unsharded one is evaluated whole by the calling process alone, with no collective
    (rank 0 drawing report.html while the other ranks have left the process group). `amp`: the autocast
    type the forward passes run under (a restored checkpoint's `Trained.amp`), None for fp32; the result's
    "precision" says which.
    """
    device = torch.device(device)
    nets = [model] if isinstance(model, nn.Module) else list(model)
    if not nets:
        raise CnnlabError("no model to evaluate")
    modes = [m.training for m in nets]
    for m in nets:
        m.eval()
    k = len(loader.classes)
    sharded = int(getattr(loader, "world_size", 1)) > 1
    keep = keep_probs and not sharded
    ens = Accumulator(k, device, keep)
    members = [Accumulator(k, device, False) for _ in nets] if len(nets) > 1 else []
    try:
        for x, y in loader.epoch(0):
            probs = [view_probs(m, x, amp) for m in nets]
            for acc, p in zip(members, probs, strict=False):
                acc.update(p, y)
            ens.update(torch.stack(probs).mean(0), y)
    finally:
        for m, mode in zip(nets, modes, strict=True):
            m.train(mode)
    result = ens.result(reduce=sharded)
    result["precision"] = precision_words(amp)
    if members:
        result["members"] = [a.result(reduce=sharded) for a in members]
    return result


def ensemble(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Average the softmax of separately evaluated nets (each result must keep its probabilities)."""
    labels = results[0]["labels"]
    for r in results[1:]:
        if not torch.equal(r["labels"], labels):
            raise CnnlabError(
                "the checkpoints were evaluated on different images; use the same --dataset/--split"
            )
    return metrics_from_probs(torch.stack([r["probs"] for r in results]).mean(0), labels)


def public(result: Any) -> Any:
    """A result as plain JSON: no tensors, NaN (a class absent from the data) as null."""
    if isinstance(result, dict):
        return {k: public(v) for k, v in result.items() if not isinstance(v, torch.Tensor)}
    if isinstance(result, list):
        return [public(v) for v in result]
    if isinstance(result, float) and result != result:
        return None
    return result


def evaluate_checkpoints(
    paths: Sequence[str],
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    views: str = "center",
    batch_size: int = 256,
    device: str = "auto",
    limit: int | None = None,
    download: bool = False,
    skip_bad_images: bool = False,
    model: str | None = None,
) -> dict[str, Any]:
    """Evaluate each checkpoint (with its own preprocessing) and, for several, their ensemble. `model`
    names the user's own network for checkpoints that hold one (`checkpoint.build_model`)."""
    if not paths:
        raise CnnlabError("give at least one checkpoint")
    if limit is not None and limit < 1:
        raise CnnlabError(f"--limit {limit} must be at least 1 (it counts the images to evaluate)")
    if batch_size < 1:
        raise CnnlabError(f"--batch-size {batch_size} must be at least 1")
    dev = resolve_device(device)
    ckpts = [checkpoint.load(p) for p in paths]
    classes = list(ckpts[0]["classes"])
    for p, c in zip(paths[1:], ckpts[1:], strict=True):
        if list(c["classes"]) != classes:
            raise CnnlabError(
                f"{p} ({c['model_name']}, {len(c['classes'])} classes) was trained on other classes than "
                f"{paths[0]} ({ckpts[0]['model_name']}, {len(classes)} classes); an ensemble needs the same"
            )
    name = dataset or str(ckpts[0]["config"]["dataset"])
    ds = data.load(name, split, data_dir, download=download, skip_bad_images=skip_bad_images)
    if list(ds.classes) != classes:
        raise CnnlabError(
            f"data set {name!r} has classes {ds.classes[:4]}..., the checkpoint {classes[:4]}...; "
            "evaluate on the data set it was trained on"
        )
    if limit is not None and limit < len(ds):
        ds = ds.subset(torch.arange(limit)) if hasattr(ds, "subset") else ds
    singles = []
    for c in ckpts:
        net = checkpoint.restore(c, dev, model)
        loader = data.BatchLoader(
            ds, batch_size, train=False, aug=net.aug, stats=net.stats, seed=0, device=dev, views=views
        )
        singles.append(evaluate(net.model, loader, dev, amp=net.amp))
    result = dict(singles[0]) if len(singles) == 1 else ensemble(singles)
    precisions = list(dict.fromkeys(r["precision"] for r in singles))  # each member's, in order
    result.update(
        dataset=name, split=split, views=views, checkpoints=list(paths), classes=classes,
        precision=" + ".join(precisions),
    )  # fmt: skip
    if len(singles) > 1:
        result["members"] = singles
    return result
