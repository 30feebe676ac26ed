"""Fine-tuning (--weights, --freeze) and training the user's own network (--model FILE.py:Class)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _reliability import assert_one_line_error, run_cli
from PIL import Image
from safetensors.torch import save_file
from test_train import tiny

from cnnlab import checkpoint, models
from cnnlab.errors import CnnlabError
from cnnlab.training import train


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished digits run of the batch-norm small AlexNet (the fast recipe): the weights to start from."""
    run = train(tiny(tmp_path_factory.mktemp("source") / "run", epochs=1))
    return run.run_dir / "checkpoints" / "last.pt"


def test_weights_then_freeze_keeps_the_frozen_layers_and_their_statistics(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = checkpoint.load(source)["model"]
    result = train(tiny(tmp_path / "run", epochs=1, weights=str(source), freeze="features", progress="lines"))
    out = capsys.readouterr().out
    assert "loaded 24 of 24 tensors from last.pt (cnnlab checkpoint of alexnet_small" in out
    assert "froze features (" in out
    after = result.model.state_dict()
    for key, value in start.items():  # running means and variances of frozen batch norms included
        if key.startswith("features."):
            assert torch.equal(after[key].cpu(), value), key
    assert not torch.equal(after["classifier.fc6.weight"].cpu(), start["classifier.fc6.weight"])
    doc = json.loads((result.run_dir / "config.json").read_text())
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert doc["config"]["weights"] == str(source) and doc["config"]["weights_sha256"] == digest
    assert doc["config"]["freeze"] == "features" and doc["model"]["frozen"] == ["features"]
    assert doc["model"]["weights"] == {"file": str(source), "sha256": digest}
    assert doc["model"]["trainable_parameters"] < doc["model"]["parameters"]
    ckpt = checkpoint.load(result.run_dir / "checkpoints" / "last.pt")
    trainable = sum(p.requires_grad for p in result.model.parameters())
    assert sum(len(g["params"]) for g in ckpt["optimizer"]["param_groups"]) == trainable  # SGD skips them
    assert "started from" in (result.run_dir / "summary.txt").read_text()


def test_a_resumed_fine_tune_keeps_its_layers_frozen(tmp_path: Path, source: Path) -> None:
    start = checkpoint.load(source)["model"]
    cfg = tiny(tmp_path / "run", epochs=2, weights=str(source), freeze="features")
    assert train({**cfg, "stop_after": 25}).stopped == "stop_after"
    resumed = train({"out": str(tmp_path / "run"), "resume": True, "progress": "none"})
    assert torch.equal(resumed.model.state_dict()["features.conv2.weight"], start["features.conv2.weight"])
    assert torch.equal(
        resumed.model.state_dict()["features.bn2.running_mean"], start["features.bn2.running_mean"]
    )


def test_safetensors_of_another_class_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = models.create("alexnet_small", num_classes=4, in_channels=1, width=0.25, batch_norm=True)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "w.safetensors")
    result = train(
        tiny(tmp_path / "run", epochs=1, weights=str(tmp_path / "w.safetensors"), progress="lines")
    )
    out = capsys.readouterr().out
    assert "classifier.fc6: 4 classes in the file, 10 in the model: left at its initialisation" in out
    doc = json.loads((result.run_dir / "config.json").read_text())
    assert (
        doc["config"]["weights_sha256"]
        == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    )
    with pytest.raises(CnnlabError, match="leaves nothing to train"):
        train(tiny(tmp_path / "none", freeze="features,classifier"))
    with pytest.raises(CnnlabError, match=r"weights file .* not found"):
        train(tiny(tmp_path / "missing", weights=str(tmp_path / "nope.pth")))
    assert not (tmp_path / "none").exists() and not (tmp_path / "missing").exists()


# ----------------------------------------------------------------------------------------- your own network

NET = """
import torch
from torch import nn
from pathlib import Path

Path(__file__).with_name("imported.txt").write_text("the file ran")  # proves when the file is imported

class Tiny(nn.Module):
    def __init__(self, num_classes=1000, width=8):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
"""


def user_argv(out: Path, spec: str, *extra: str) -> list[str]:
    return ["train", "--model", spec, "--dataset", "digits", "--recipe", "fast", "--epochs", "1",
            "--batch-size", "64", "--out", str(out), "--progress", "none", *extra]  # fmt: skip


def test_your_own_network_trains_and_is_never_rebuilt_from_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = tmp_path / "code" / "mynet.py"
    net.parent.mkdir()
    net.write_text(NET)
    spec = f"{net}:Tiny"
    out = tmp_path / "run"
    code, _, err = run_cli(user_argv(out, spec), capsys)  # the class count left at 1000
    assert "gives outputs of shape [1, 1000], the data set has 10 classes" in assert_one_line_error(code, err)
    assert "--model-opt num_classes=10" in err and not out.exists()
    code, stdout, err = run_cli(
        user_argv(out, spec, "--model-opt", "num_classes=10", "--stop-after", "10"), capsys
    )
    assert code == 0, err
    assert stdout.startswith("stopped on request (--stop-after) in epoch 1 after step 10")
    doc = json.loads((out / "config.json").read_text())
    source = {"spec": spec, "file": str(net.resolve()), "attr": "Tiny",
              "sha256": hashlib.sha256(net.read_bytes()).hexdigest()}  # fmt: skip
    assert doc["model"]["source"] == source and doc["model"]["options"] == {"num_classes": 10}
    assert doc["config"]["input_size"] == 8  # the data's side: the network has no size of its own
    last = out / "checkpoints" / "last.pt"
    ckpt = checkpoint.load(last)
    assert ckpt["model_name"] == spec and ckpt["model_source"] == source

    # A checkpoint naming a file is never a reason to import it: every command needs --model.
    (net.parent / "imported.txt").unlink()
    with pytest.raises(CnnlabError, match="never imports code a checkpoint names"):
        checkpoint.build_model(ckpt)
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    refusals = {
        "eval": ["eval", str(last), "--out", str(tmp_path / "eval")],
        "predict": ["predict", str(last), str(image)],
        "export": ["export", str(last), "--format", "safetensors", "-o", str(tmp_path / "m.safetensors")],
        "resume": ["train", "--out", str(out), "--resume", "--progress", "none"],
    }
    for name, argv in refusals.items():
        line = assert_one_line_error(*run_cli(argv, capsys)[::2])
        # ... and never proposes the checkpoint's own spec: copied, it would let the file choose the code.
        assert spec not in line and "never imports code" in line and "your_file.py:YourClass" in line, name
    assert not (net.parent / "imported.txt").exists()
    for name, argv in refusals.items():
        code, _, err = run_cli([*argv, "--model", spec], capsys)
        assert code == 0, (name, err)
    assert checkpoint.load(last)["epoch"] == 1 and (out / "summary.txt").is_file()
    line = assert_one_line_error(*run_cli(["eval", str(last), "--model", "alexnet_small"], capsys)[::2])
    assert "--model" in line
