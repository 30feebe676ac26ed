"""Files from strangers: a checkpoint or a CIFAR batch never runs code, and foreign checkpoints are refused.

The payloads are real: pickles whose `__reduce__` calls `exec` or `os.system` to create a marker file.
Each test asserts that the load failed with a CnnlabError (or the CLI's one-line error) and that the
marker does not exist, so the code never ran.
"""

from __future__ import annotations

import ast
import copy
import os
import pickle
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _formats import write_cifar_batch, write_cifar_meta
from _reliability import assert_no_run_left, assert_one_line_error, run_cli, tiny_argv
from PIL import Image

import cnnlab
from cnnlab import checkpoint, data, integrity
from cnnlab.data import cifar
from cnnlab.errors import CnnlabError
from cnnlab.training import runfolder


class Payload:
    """Pickles to a call of exec / os.system that creates `marker` when unpickled."""

    def __init__(self, marker: Path, how: str = "exec") -> None:
        self.marker, self.how = str(marker), how

    def __reduce__(self) -> tuple[Any, ...]:
        if self.how == "system":
            return (os.system, (f"touch {shlex.quote(self.marker)}",))
        return (exec, (f"open({self.marker!r}, 'w').close()",))


# ---------------------------------------------------------------------------------------------- CIFAR


def cifar_folder(root: Path, n: int = 4) -> Path:
    folder = root / cifar.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in (*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES):
        write_cifar_batch(folder / name, rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), list(range(n)))
    write_cifar_meta(folder, cifar.CLASSES)
    return folder


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("where", ["whole file", "in the labels", "in batches.meta"])
def test_cifar_pickle_payload_is_refused_without_running(tmp_path: Path, protocol: int, where: str) -> None:
    folder = cifar_folder(tmp_path)
    assert len(data.load("cifar10", "train", data_dir=tmp_path)) == 20  # the honest files load
    marker = tmp_path / "pwned"
    if where == "whole file":
        blob = pickle.dumps(Payload(marker), protocol=protocol)
        (folder / "data_batch_3").write_bytes(blob)
    elif where == "in the labels":
        obj = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, Payload(marker, "system")]}
        (folder / "data_batch_1").write_bytes(pickle.dumps(obj, protocol=protocol))
    else:
        obj = {b"label_names": [b"cat", Payload(marker)], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(obj, protocol=protocol))
    with pytest.raises(CnnlabError, match="refusing to load it") as err:
        data.load("cifar10", "train", data_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_cifar_payload_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = cifar_folder(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    argv = ["train", "--model", "alexnet_small", "--dataset", "cifar10", "--data-dir", str(tmp_path),
            "--epochs", "1", "--progress", "none", "--out", str(tmp_path / "run")]  # fmt: skip
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "test_batch" in line and ".exec" in line
    assert not marker.exists()
    assert_no_run_left(tmp_path / "run")


def test_the_cifar_unpickler_resolves_only_array_builders() -> None:
    modules = {module for module, _ in cifar._ALLOWED}
    assert modules <= {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                       "numpy._core.numeric", "_codecs"}  # fmt: skip
    for dangerous in (("builtins", "exec"), ("builtins", "eval"), ("os", "system"), ("posix", "system"),
                      ("subprocess", "Popen"), ("builtins", "getattr"), ("numpy", "load")):  # fmt: skip
        with pytest.raises(Exception, match=".".join(dangerous)):
            cifar.RestrictedUnpickler.find_class(None, *dangerous)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ checkpoints


def fake_checkpoint(model: Any) -> dict[str, Any]:
    return {
        "format": checkpoint.FORMAT, "format_version": 1, "model_name": "alexnet_small",
        "model_options": {}, "num_classes": 2, "in_channels": 1, "classes": ["a", "b"], "model": model,
    }  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("how", ["exec", "system"])
def test_checkpoint_pickle_payload_is_refused_without_running(tmp_path: Path, legacy: bool, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(fake_checkpoint({"w": Payload(marker, how)}), path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(
        CnnlabError, match=r"cannot read checkpoint .* refers to \S*(exec|system).*refused"
    ) as err:
        checkpoint.load(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real one-step runs: A on digits (10 classes, grey), B on a 3-class image folder (RGB)."""
    root = tmp_path_factory.mktemp("runs")
    images = root / "images"
    for split in ("train", "val"):
        for k, name in enumerate(("ant", "bee", "cow")):
            (images / split / name).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (10, 10), (40 * k, 20 * i, 90)).save(images / split / name / f"{i}.png")
    from cnnlab.cli import main

    for name, extra in (("a", []), ("b", ["--dataset", f"folder:{images}"])):
        assert main(tiny_argv(root / name, 1, "--stop-after", "1", *extra)) == 0
    return {"a": root / "a", "b": root / "b", "images": images}


def test_evil_checkpoint_through_every_command(
    tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    good = torch.load(runs["a"] / "checkpoints" / "last.pt", weights_only=True)
    good["model"] = dict(good["model"], extra=Payload(marker))
    torch.save(good, evil)
    img = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(img)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    runfolder.write_marker(run, checkpointed=True, new_run=True)  # a run folder cnnlab made
    (run / "config.json").write_text("{}")
    (run / "checkpoints" / "last.pt").write_bytes(evil.read_bytes())
    for argv in (
        ["eval", str(evil), "--out", str(tmp_path / "ev")],
        ["predict", str(evil), str(img)],
        ["export", str(evil), "--format", "safetensors", "-o", str(tmp_path / "x.safetensors")],
        ["train", "--out", str(run), "--resume", "--progress", "none"],
    ):
        line = assert_one_line_error(*run_cli(argv, capsys)[::2])
        assert "cannot read checkpoint" in line, line
    assert not marker.exists()
    assert not (tmp_path / "ev").exists() and not (tmp_path / "x.safetensors").exists()


TAMPER: dict[str, Callable[[dict[str, Any]], None]] = {
    "num_classes a string": lambda c: c.update(num_classes="ten"),
    "num_classes negative": lambda c: c.update(num_classes=-3),
    "in_channels 0": lambda c: c.update(in_channels=0),
    "model_options not a dict": lambda c: c.update(model_options=5),
    "classes not a list": lambda c: c.update(classes=7),
    "fewer class names": lambda c: c.update(classes=["a"]),
    "weights not tensors": lambda c: c.update(model=[1, 2]),
    "data_stats unreadable": lambda c: c.update(data_stats={"mean": "x"}),
    "augment impossible": lambda c: c.update(augment=dict(c["augment"], input_size=-4)),
    "augment not a dict": lambda c: c.update(augment="x"),
    "format_version a string": lambda c: c.update(format_version="abc"),
    "not a cnnlab file": lambda c: c.update(format="something-else"),
    "no model_name": lambda c: c.pop("model_name"),
    # The whole structure is checked on load, before a reader uses any of it (issue 20):
    "a mean of 5 channels for 1-channel images": lambda c: c.update(
        data_stats=dict(c["data_stats"], mean=[0.1] * 5)
    ),
    "an empty mean image": lambda c: c.update(data_stats=dict(c["data_stats"], mean_image=torch.zeros(0))),
    "eigenvectors of the wrong shape": lambda c: c.update(
        data_stats=dict(c["data_stats"], eigvecs=[[1.0, 0.0]])
    ),
    "an empty config": lambda c: c.update(config={}),
    "a config naming no data set": lambda c: c.update(config=dict(c["config"], dataset="")),
}


@pytest.mark.parametrize("change", list(TAMPER))
def test_tampered_checkpoint_fields_are_refused(tmp_path: Path, runs: dict[str, Path], change: str) -> None:
    ckpt = copy.deepcopy(torch.load(runs["a"] / "checkpoints" / "last.pt", weights_only=True))
    TAMPER[change](ckpt)
    ckpt["integrity"] = integrity.digest(ckpt)  # a forger writes a matching digest (else it alone refuses)
    torch.save(ckpt, tmp_path / "t.pt")
    with pytest.raises(CnnlabError, match=r"damaged|not a cnnlab checkpoint"):
        checkpoint.load(tmp_path / "t.pt")


def test_a_checkpoint_lacking_a_part_fails_where_it_is_needed(
    tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = torch.load(runs["a"] / "checkpoints" / "last.pt", weights_only=True)
    del ckpt["data_stats"]  # as a tool that drops a part (and writes a matching digest) would write it
    ckpt["integrity"] = integrity.digest(ckpt)
    torch.save(ckpt, tmp_path / "t.pt")
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    line = assert_one_line_error(
        *run_cli(["predict", str(tmp_path / "t.pt"), str(tmp_path / "x.png")], capsys)[::2]
    )
    assert "has no 'data_stats'" in line


def test_resume_refuses_a_checkpoint_of_another_model(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--out", str(runs["a"]), "--resume", "--model", "alexnet_half", "--progress", "none"]
    line = assert_one_line_error(*run_cli(argv, capsys)[::2])
    assert "'alexnet_small'" in line and "'alexnet_half'" in line


def test_resume_refuses_data_with_another_class_count(
    tmp_path: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images = runs["images"]
    for split in ("train", "val"):  # a fourth class appears in the image folder
        (images / split / "dog").mkdir()
        Image.new("RGB", (10, 10)).save(images / split / "dog" / "0.png")
    try:
        line = assert_one_line_error(*run_cli(["train", "--out", str(runs["b"]), "--resume"], capsys)[::2])
    finally:
        for split in ("train", "val"):
            (images / split / "dog" / "0.png").unlink()
            (images / split / "dog").rmdir()
    assert "3 classes" in line and "has 4" in line, line


def test_an_ensemble_refuses_checkpoints_with_other_classes(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = (str(runs[k] / "checkpoints" / "last.pt") for k in "ab")
    line = assert_one_line_error(*run_cli(["eval", a, b], capsys)[::2])
    assert "10 classes" in line and "3 classes" in line and a in line and b in line


# -------------------------------------------------------------------------------------- the source itself


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """(dotted name, call) for every call whose function is a name or an attribute chain."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                parts.append(f.id)
                found.append((".".join(reversed(parts)), node))
    return found


def test_the_package_never_unpickles_without_a_safety_net() -> None:
    """Every torch.load passes weights_only=True; no plain pickle/marshal/shelve load, no allow_pickle,
    no torch.jit.load or eval/exec; the one Unpickler subclass overrides find_class."""
    package = Path(cnnlab.__file__).parent
    sources = sorted(package.rglob("*.py"))
    assert len(sources) > 10
    torch_loads = 0
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        where = str(path.relative_to(package.parent))
        for name, call in _calls(tree):
            last = name.rsplit(".", 1)[-1]
            if name in ("torch.load", "torch.serialization.load") or (last == "load" and "torch" in name):
                torch_loads += 1
                kw = {k.arg: k.value for k in call.keywords}
                assert (
                    isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                ), f"{where}:{call.lineno}: {name} without weights_only=True"
            assert name not in ("pickle.load", "pickle.loads", "marshal.load", "marshal.loads", "shelve.open",
                                "torch.jit.load", "eval", "exec", "dill.load", "joblib.load"), (
                f"{where}:{call.lineno}: {name}"
            )  # fmt: skip
            if last == "load" and name.startswith(("np.", "numpy.")):
                kw = {k.arg: k.value for k in call.keywords}
                allow = kw.get("allow_pickle")
                assert allow is None or (isinstance(allow, ast.Constant) and allow.value is False), where
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                assert "find_class" in methods, f"{where}: {node.name} does not restrict find_class"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names]
                assert not (
                    isinstance(node, ast.ImportFrom) and node.module == "torch" and "load" in names
                ), where
    assert torch_loads >= 1  # the scan sees checkpoint.load's call
