"""`cnnlab gradcam`: where the net looks for a class (Selvaraju et al., Grad-CAM, ICCV 2017, Sec. 3).

For a layer's feature maps A^k and the class score y^c (the logit, before the softmax), each map gets the
weight alpha_k = the mean over its positions of dy^c/dA^k (their Eq. 1), and the heat map is
ReLU(sum_k alpha_k A^k) (Eq. 2): positive evidence for the class only. It has the layer's resolution and is
upsampled bilinearly to the input. The default layer is the last convolutional stage (conv5 in the
paper-size AlexNets, conv3 in alexnet_small, the last conv of VGG, inception5b in GoogLeNet): the paper's
choice, the deepest maps that still keep space. The two-tower nets' maps are both towers' joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab import outfiles
from cnnlab.errors import CnnlabError
from cnnlab.pictures import common
from cnnlab.pictures.layers import Stage, catch, feature_stages, joined, pick


@dataclass
class GradCam:
    layer: str
    targets: list[int]  # the class each map is for
    probs: list[float]  # its probability
    predicted: list[int]
    maps: torch.Tensor  # [N, h, w] ReLU(sum_k alpha_k A^k) at the layer's resolution, on the CPU

    def heat(self, side: int) -> torch.Tensor:
        """[N, side, side], each map upsampled and divided by its maximum (all-zero maps stay zero)."""
        up = common.upsample(self.maps, side).clamp_min(0)
        peak = up.flatten(1).max(dim=1).values.clamp_min(1e-12)
        return up / peak[:, None, None]


def default_stage(model: nn.Module) -> Stage:
    return feature_stages(model)[-1]


def gradcam(
    model: nn.Module, x: torch.Tensor, stage: Stage | None = None, target: int | Sequence[int] | None = None
) -> GradCam:
    """Grad-CAM of the batch x [N, C, H, W] at `stage` (default: the last) for `target` (default: each
    image's predicted class; one class for all, or one per image)."""
    stage = stage or default_stage(model)
    n = x.shape[0]
    x = x.detach().requires_grad_(True)  # a graph even if the weights are frozen
    with torch.enable_grad(), catch([stage], detach=False) as caught:
        logits = model(x)
        if not isinstance(logits, torch.Tensor):
            raise CnnlabError("Grad-CAM needs the model in eval mode (a plain logits output)")
        probs = torch.softmax(logits.detach().float(), dim=1)
        predicted = probs.argmax(dim=1)
        if target is None:
            cls = predicted
        elif isinstance(target, int):
            cls = torch.full((n,), target, device=logits.device)
        else:
            cls = torch.as_tensor(list(target), device=logits.device)
        # The images do not interact (eval mode), so the gradient of the summed scores gives each
        # image's own gradient.
        score = logits.gather(1, cls[:, None].to(logits.device)).sum()
        parts = caught[stage.name]
        grads = torch.autograd.grad(score, parts)
    maps = joined([p.detach() for p in parts]).float()
    weights = joined(list(grads)).float().mean(dim=(2, 3), keepdim=True)  # Eq. 1
    cam = torch.relu((weights * maps).sum(dim=1))  # Eq. 2
    chosen = probs.gather(1, cls[:, None].to(probs.device))[:, 0]
    return GradCam(stage.name, cls.tolist(), chosen.tolist(), predicted.tolist(), cam.cpu())


def draw(ax_image: Any, ax_heat: Any, picture: np.ndarray, heat: np.ndarray, label: str) -> Any:
    """One image and its heat map on two axes; returns the heat image (for a colour bar)."""
    from matplotlib.colors import Normalize

    common.show_image(ax_image, picture, label)
    return common.overlay(ax_heat, picture, heat, "jet", Normalize(0.0, 1.0))


def figure(picture: np.ndarray, heat: np.ndarray, title: str, label: str) -> Any:
    plt = common.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.2, 4.2), layout="constrained")
    shown = draw(left, right, picture, heat, label)
    right.set_title("Grad-CAM heat over the input", fontsize=9)
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.04, label="evidence for the class (max = 1)")
    fig.suptitle(title, fontsize=11)
    return fig


def grid_figure(pictures: np.ndarray, heats: np.ndarray, labels: Sequence[str], title: str) -> Any:
    """Several images: the image above, its heat map below, one column each, one colour bar."""
    plt = common.pyplot()
    n = len(pictures)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 1.0, 4.4), squeeze=False, layout="constrained")
    shown = None
    for i in range(n):
        shown = draw(axes[0, i], axes[1, i], pictures[i], heats[i], labels[i])
    axes[0, 0].set_ylabel("input", fontsize=9)
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=9)
    if shown is not None:
        fig.colorbar(shown, ax=list(axes[:, -1]), fraction=0.05, pad=0.02, label="evidence (max = 1)")
    fig.suptitle(title, fontsize=11)
    return fig


def write_gradcam(
    subject: common.Subject,
    images: Sequence[str],
    out_dir: str | Path,
    *,
    layer: str | None = None,
    target: str | None = None,
    outputs: Any = None,
) -> list[tuple[Path, GradCam, int]]:
    """One PNG per image in `out_dir` (NAME-gradcam.png, each name distinct); returns (path, result, index
    in result). `outputs`: the rule for replacing files (`common.check_png`); all the files are written
    together at the end, or none."""
    if not images:
        raise CnnlabError("give at least one image file")
    out_dir = Path(out_dir)
    if out_dir.suffix.lower() == ".png":
        raise CnnlabError(f"-o {out_dir} is a file name; gradcam writes one PNG per image into a folder")
    outputs = outputs or outfiles.Outputs("-o")
    names = output_paths(images, out_dir, outputs)
    stages = feature_stages(subject.model)
    stage = pick(stages, [layer])[0] if layer else stages[-1]
    cls = subject.class_index(target)
    x, pictures = subject.from_files(list(images))
    found = gradcam(subject.model, x, stage, cls)
    heats = found.heat(x.shape[-1]).numpy()
    written, pngs = [], {}
    for i, image in enumerate(images):
        c, pred = found.targets[i], found.predicted[i]
        which = "chosen class" if cls is not None else "predicted class"
        label = f"{Path(image).name}\npredicted {subject.classes[pred]}"
        title = (
            f"Grad-CAM of {subject.name} at {found.layer} for the {which} "
            f"{subject.classes[c]} ({common.percent(found.probs[i])})"
        )
        pngs[names[i]] = common.figure_bytes(figure(pictures[i], heats[i], title, label))
        written.append((names[i], found, i))
    outputs.write(pngs)
    return written


def output_paths(images: Sequence[str], out_dir: Path, outputs: Any) -> list[Path]:
    """One distinct file per image: NAME-gradcam.png, or NAME-I-gradcam.png (I its position, then a
    counter) when another image already took that name (`a.jpg` and `a.png`; `a.jpg` and `a-1.png`).
    Each is checked under the rule before any work."""
    taken: set[str] = set()
    paths = []
    for i, image in enumerate(images):
        stem = Path(image).stem
        candidates = [f"{stem}-gradcam.png", f"{stem}-{i}-gradcam.png"]
        candidates += (f"{stem}-{i}-{n}-gradcam.png" for n in range(1, len(images) + 2))
        name = next(c for c in candidates if c.lower() not in taken)  # case-blind file systems too
        taken.add(name.lower())
        paths.append(common.check_png(outputs.claim(out_dir / name), outputs))
    return paths
