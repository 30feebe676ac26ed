"""Start from someone else's weights: torchvision `.pth` state dicts, safetensors files, cnnlab checkpoints.

`load_pretrained(model, path)` copies the file's tensors into `model` and says, in plain sentences, what it
had to adapt: a last layer of another class count stays at its initialisation (it has to be trained), and
3-channel first-layer filters become 1-channel ones by summing over their input channels (a grey image
is R = G = B, and the sum is what those filters computed on it). Anything else that does not fit is an
error naming the layers. Nothing in a weight file runs: `torch.load(weights_only=True)` or safetensors.

`freeze(model, spec)` stops training the layers a fine-tuning run keeps (`conv1-conv5`, `features`), and
their batch-norm statistics with them.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from cnnlab import integrity
from cnnlab.errors import CnnlabError, first_line


class LoadReport(NamedTuple):
    notes: list[str]  # what was loaded and adapted, one sentence each
    sha256: str  # the file's digest, for the run folder


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors by key, what the file was) from a safetensors file, a cnnlab checkpoint or a state dict;
    weights holding NaN or infinities are refused, as a checkpoint's are."""
    state, kind = _read_state(Path(path))
    try:
        bad = integrity.first_nonfinite(state)
    except integrity.Untrustworthy as exc:
        raise CnnlabError(f"weights {path}: {exc}; the file is damaged or malicious") from None
    if bad is not None:
        raise CnnlabError(
            f"weights {path}: {bad!r} holds NaN or infinite values, so training would start from meaningless "
            "weights; use another --weights file"
        )
    return state, kind


def _read_state(p: Path) -> tuple[dict[str, torch.Tensor], str]:
    if not p.is_file():
        raise CnnlabError(f"weights file {p} not found")
    if p.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(p), "safetensors file"
        except (SafetensorError, OSError, ValueError) as exc:
            raise CnnlabError(f"cannot read {p} as safetensors ({first_line(exc)}); is it damaged?") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", " ".join(str(exc).split()))
        what = f"refers to {found.group(1)}" if found else "holds more than tensors"
        raise CnnlabError(f"cannot read weights {p}: it {what}; refused without running it") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"cannot read weights {p} ({first}); not a torch or safetensors file") from None
    if isinstance(obj, dict) and obj.get("format") == integrity.FORMAT:
        # A cnnlab checkpoint: only its weights are used, after its digest (models sit below `checkpoint`,
        # whose other checks are about rebuilding and resuming, not about borrowing weights).
        integrity.verify(obj, p)
        weights = obj.get("model")
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise CnnlabError(f"checkpoint {p}: its model is not a dict of tensors; it is damaged")
        return {str(k): v for k, v in weights.items()}, f"cnnlab checkpoint of {obj.get('model_name')!s:.80}"
    for key in ("state_dict", "model"):  # Lightning's and many scripts' wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CnnlabError(f"{p} is not a state dict (a dict of named tensors, as torchvision saves)")
    return {str(k): v for k, v in obj.items()}, "state dict"


def _strip_prefixes(state: dict[str, torch.Tensor], notes: list[str]) -> dict[str, torch.Tensor]:
    for prefix, why in (("module.", "DistributedDataParallel"), ("_orig_mod.", "torch.compile")):
        if all(k.startswith(prefix) for k in state):
            notes.append(f"removed the '{prefix}' prefix {why} adds to every key")
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _first_conv_key(model: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight"
    return None


def _classifier_keys(model: nn.Module, theirs: dict[str, torch.Tensor]) -> set[str]:
    """Keys of linear layers whose output is the class count and whose inputs match the file's."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return set()
    classes = linears[-1][1].out_features
    keys = set()
    for name, m in linears:
        w = theirs.get(f"{name}.weight")
        if m.out_features == classes and w is not None and w.dim() == 2 and w.shape[1] == m.in_features:
            keys |= {f"{name}.weight", f"{name}.bias"}
    return keys


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy the weights of `path` into `model` (in place); the notes say what was adapted.

    Keys must match the model's (torchvision's AlexNet, VGG and GoogLeNet files fit `alexnet_torchvision`,
    `vgg*` and `googlenet_torchvision`). A classifier of another class count is left at its
    initialisation; a 3-channel first conv is summed over its input channels for a 1-channel model.
    """
    p = Path(path)
    state, kind = read_state(p)
    notes: list[str] = []
    state = _strip_prefixes(state, notes)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CnnlabError(
            f"{p} does not fit this network: {_few(missing)} missing, {_few(unexpected)} not in the model; "
            "it holds weights of another architecture (torchvision's AlexNet fits alexnet_torchvision)"
        )
    first = _first_conv_key(model)
    classifier = _classifier_keys(model, state)
    kept: list[str] = []
    bad: list[str] = []
    merged: dict[str, torch.Tensor] = {}
    for key, mine in own.items():
        value = state[key]
        if value.shape == mine.shape:
            merged[key] = value
        elif (
            key == first
            and value.dim() == 4
            and value.shape[1] == 3
            and mine.shape[1] == 1
            and (value.shape[0] == mine.shape[0] and value.shape[2:] == mine.shape[2:])
        ):
            merged[key] = value.sum(dim=1, keepdim=True)
            notes.append(
                f"{key}: the file's filters read 3 channels, the model 1: summed over their input channels "
                "(what they computed on a grey image with R = G = B)"
            )
        elif key in classifier:
            merged[key] = mine
            kept.append(key)
        else:
            bad.append(f"{key} {list(value.shape)} (model {list(mine.shape)})")
    if bad:
        raise CnnlabError(f"{p} does not fit this network: shapes differ for {', '.join(bad[:4])}")
    model.load_state_dict(merged, strict=True)
    for layer in sorted({k.rsplit(".", 1)[0] for k in kept}):
        classes_file = state[f"{layer}.weight"].shape[0]
        classes_model = own[f"{layer}.weight"].shape[0]
        notes.append(
            f"{layer}: {classes_file} classes in the file, {classes_model} in the model: left at its "
            "initialisation (it learns the new classes from scratch)"
        )
    digest = sha256_of(p)
    loaded = len(merged) - len(kept)
    notes.insert(0, f"loaded {loaded} of {len(merged)} tensors from {p.name} ({kind}, sha256 {digest[:12]})")
    return LoadReport(notes, digest)


def _few(keys: list[str]) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
    return f"{len(keys)} keys ({shown})"


# ---------------------------------------------------------------------------------------------- freezing

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class Frozen:
    """What `freeze` froze: module names, their parameter count, and the norm layers to keep in eval."""

    names: list[str]
    parameters: int
    norm_layers: list[nn.Module] = field(default_factory=list, repr=False)

    def keep_eval(self) -> None:
        """Call after every `model.train()`: frozen batch norms keep their running statistics."""
        for m in self.norm_layers:
            m.eval()

    def describe(self) -> str:
        return f"froze {', '.join(self.names)} ({self.parameters:,} parameters, batch-norm statistics too)"


def _convs_with_norms(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """Each conv (registration order) with the batch-norm layers registered after it, before the next."""
    found: list[tuple[str, list[tuple[str, nn.Module]]]] = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            found.append((name, [(name, m)]))
        elif isinstance(m, NORMS) and found:
            found[-1][1].append((name, m))
    return found


_CONV = re.compile(r"conv(\d+)(?:-conv(\d+))?")


def freeze(model: nn.Module, spec: str) -> Frozen:
    """Freeze `spec`: `conv1-conv5` (the first five convolutions, by order), `conv3`, a module name
    (`features`, `features.0`) or several of these joined by commas. Frozen parameters stop requiring
    gradients; frozen batch norms go to eval mode (call `Frozen.keep_eval()` after each `model.train()`)."""
    convs = _convs_with_norms(model)
    modules = dict(model.named_modules())
    chosen: list[tuple[str, nn.Module]] = []
    names: list[str] = []
    for part in (s.strip() for s in spec.split(",")):
        match = _CONV.fullmatch(part)
        if match:
            a, b = int(match.group(1)), int(match.group(2) or match.group(1))
            if not 1 <= a <= b <= len(convs):
                raise CnnlabError(f"--freeze {part}: this network has conv1 to conv{len(convs)}")
            for _, members in convs[a - 1 : b]:
                chosen += members
            names.append(part)
        elif part and part in modules:
            chosen += [(n, m) for n, m in modules[part].named_modules(prefix=part)]
            names.append(part)
        else:
            top = ", ".join(n for n, _ in model.named_children())
            raise CnnlabError(
                f"--freeze {part!r}: give conv1-conv5 (a range of convolutions), convN, or a module name "
                f"({top})"
            )
    seen: set[int] = set()
    count = 0
    norms: list[nn.Module] = []
    for _, m in chosen:
        for p in m.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                p.requires_grad_(False)
                count += p.numel()
        if isinstance(m, NORMS) and m not in norms:
            m.eval()
            norms.append(m)
    return Frozen(names, count, norms)


__all__ = ["Frozen", "LoadReport", "freeze", "load_pretrained", "read_state", "sha256_of"]
