"""Fine-tuning's weight loading: torchvision state dicts, safetensors, cnnlab checkpoints; freezing."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from cnnlab import checkpoint, models
from cnnlab.errors import CnnlabError
from cnnlab.models.pretrained import freeze, load_pretrained


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """torchvision's own AlexNet (random weights: nothing can be downloaded), saved as torchvision does."""
    torch.manual_seed(1)
    net = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path_factory.mktemp("weights") / "alexnet-owt.pth"
    torch.save(net.state_dict(), path)
    return path, net


def test_torchvision_weights_give_torchvision_outputs(tv_file: tuple[Path, nn.Module]) -> None:
    path, tv = tv_file
    model = models.create("alexnet_torchvision")
    notes, digest = load_pretrained(model, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert notes == [f"loaded 16 of 16 tensors from alexnet-owt.pth (state dict, sha256 {digest[:12]})"]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tv(x), atol=1e-5, rtol=0)


def test_other_class_count_keeps_the_last_layer_and_says_so(tv_file: tuple[Path, nn.Module]) -> None:
    path, tv = tv_file
    model = models.create("alexnet_torchvision", num_classes=10)
    before = model.classifier[6].weight.detach().clone()
    notes, _ = load_pretrained(model, path)
    assert torch.equal(model.classifier[6].weight, before)
    assert torch.equal(model.classifier[4].weight, tv.classifier[4].weight)
    assert any(
        "classifier.6: 1000 classes in the file, 10 in the model: left at its init" in n for n in notes
    )
    assert notes[0].startswith("loaded 14 of 16 tensors")


def test_grey_model_sums_conv1_over_input_channels(tv_file: tuple[Path, nn.Module]) -> None:
    path, tv = tv_file
    model = models.create("alexnet_torchvision", num_classes=5, in_channels=1)
    notes, _ = load_pretrained(model, path)
    torch.testing.assert_close(model.features[0].weight, tv.features[0].weight.sum(1, keepdim=True))
    assert any(n.startswith("features.0.weight: the file's filters read 3 channels") for n in notes)
    # The summed filters on a grey image give what the colour filters gave on that image as RGB.
    grey = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(model.features[0](grey), tv.features[0](grey.expand(1, 3, 64, 64)))


def test_safetensors_and_a_cnnlab_checkpoint(tmp_path: Path) -> None:
    source = models.create("alexnet_small", 3, 1, width=0.25)
    file = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    target = models.create("alexnet_small", 3, 1, width=0.25)
    notes, _ = load_pretrained(target, file)
    assert "safetensors file" in notes[0]
    pairs = zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    ckpt = {"format": checkpoint.FORMAT, "format_version": 1, "model_name": "alexnet_small",
            "model_options": {"width": 0.25}, "num_classes": 3, "in_channels": 1, "classes": ["a", "b", "c"],
            "model": source.state_dict()}  # fmt: skip
    checkpoint.save(ckpt, tmp_path / "best.pt")
    other = models.create("alexnet_small", 7, 1, width=0.25)
    notes, _ = load_pretrained(other, tmp_path / "best.pt")
    assert "cnnlab checkpoint of alexnet_small" in notes[0]
    assert torch.equal(other.features.conv2.weight, source.features.conv2.weight)
    assert any("fc6: 3 classes in the file, 7 in the model" in n for n in notes)


def test_ddp_prefix_is_removed(tmp_path: Path) -> None:
    source = models.create("alexnet_small", 3, 1, width=0.25)
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "d.pth")
    notes, _ = load_pretrained(models.create("alexnet_small", 3, 1, width=0.25), tmp_path / "d.pth")
    assert any("'module.' prefix" in n for n in notes)


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_foreign_or_hostile_files_are_refused(tv_file: tuple[Path, nn.Module], tmp_path: Path) -> None:
    path, _ = tv_file
    with pytest.raises(CnnlabError, match=r"does not fit this network: .* missing.*alexnet_torchvision"):
        load_pretrained(models.create("alexnet"), path)
    with pytest.raises(CnnlabError, match=r"shapes differ for features.0.weight"):
        load_pretrained(models.create("alexnet_torchvision", in_channels=2), path)
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Payload(marker)}))
    with pytest.raises(CnnlabError, match="refused without running it"):
        load_pretrained(models.create("alexnet_small", 3, 1), tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(CnnlabError, match="not found"):
        load_pretrained(models.create("alexnet_small", 3, 1), tmp_path / "none.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CnnlabError, match=r"cannot read .* as safetensors"):
        load_pretrained(models.create("alexnet_small", 3, 1), tmp_path / "bad.safetensors")


def test_freeze_conv_range_features_and_batch_norm() -> None:
    model = models.create("alexnet_torchvision", 10, batch_norm=True)
    frozen = freeze(model, "conv1-conv3")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.weight.requires_grad for c in convs] == [False, False, False, True, True]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert frozen.norm_layers == bns[:3]
    model.train()
    frozen.keep_eval()
    assert [b.training for b in bns] == [False, False, False, True, True]
    assert not bns[0].weight.requires_grad and bns[3].weight.requires_grad
    assert frozen.parameters == sum(p.numel() for p in model.parameters() if not p.requires_grad)

    other = models.create("alexnet_torchvision", 10)
    frozen = freeze(other, "features")
    assert all(not p.requires_grad for p in other.features.parameters())
    assert all(p.requires_grad for p in other.classifier.parameters())
    assert frozen.names == ["features"] and "froze features" in frozen.describe()
    paper = models.create("alexnet_small", 10, 1, width=0.25)
    freeze(paper, "conv2, classifier.fc6")
    assert not paper.features.conv2.weight.requires_grad and paper.features.conv1.weight.requires_grad
    assert not paper.classifier.fc6.weight.requires_grad
    for bad, message in (("conv1-conv9", "conv1 to conv3"), ("decoder", "module name")):
        with pytest.raises(CnnlabError, match=message):
            freeze(paper, bad)
