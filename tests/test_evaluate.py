"""Evaluation: multi-view testing (the paper's ten crops), ensembles, the `eval` command's files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import fashion_mnist_installed
from test_train import tiny  # tests/ is on sys.path (no __init__.py)

from cnnlab import checkpoint, cli, data
from cnnlab.device import autocast, eval_amp
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate, evaluate_checkpoints
from cnnlab.training import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two short runs (seeds 0 and 1) on 8x8 digits with 6x6 inputs, so there are crops to take."""
    root = tmp_path_factory.mktemp("eval")
    paths = []
    for seed in (0, 1):
        train(tiny(root / f"seed{seed}", seed=seed, input_size=6, epochs=2, dropout=0.0))
        paths.append(root / f"seed{seed}" / "checkpoints" / "last.pt")
    return paths


def _by_hand(ckpt_path: Path, views: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax averaged over views, computed without the loader: normalise, crop, run (under the autocast
    its run trained in, where this CPU runs that fast: `device.eval_amp`), average."""
    ckpt = checkpoint.load(ckpt_path)
    model = checkpoint.build_model(ckpt)
    amp = eval_amp(ckpt["config"]["amp_dtype"], "cpu")
    ds = data.load("digits", "test")
    stats = data.DataStats.from_dict(ckpt["data_stats"])
    x = (ds.images.float() / 255 - stats.mean.view(1, -1, 1, 1)) / stats.std.view(1, -1, 1, 1)
    crops = data.eval_views(x, views, 6)  # [V, N, C, 6, 6]
    with torch.no_grad(), autocast(amp, "cpu"):
        probs = torch.stack([torch.softmax(model(v).float(), 1) for v in crops]).mean(0)
    return probs, ds.labels


def test_tencrop_averages_the_softmax_of_ten_views(runs: list[Path]) -> None:
    result = evaluate_checkpoints([str(runs[0])], dataset="digits", views="tencrop")
    probs, labels = _by_hand(runs[0], "tencrop")
    torch.testing.assert_close(result["probs"], probs, rtol=1e-4, atol=1e-5)
    assert torch.equal(result["labels"], labels)
    assert result["count"] == len(labels)
    expected_top1 = (probs.argmax(1) != labels).double().mean().item()
    assert result["top1_err"] == pytest.approx(expected_top1)
    assert result["top5_err"] <= result["top1_err"]
    conf = torch.tensor(result["confusion"])
    assert conf.sum() == len(labels) and conf.trace() == round((1 - result["top1_err"]) * len(labels))
    center = evaluate_checkpoints([str(runs[0])], dataset="digits", views="center")
    torch.testing.assert_close(center["probs"], _by_hand(runs[0], "center")[0], rtol=1e-4, atol=1e-5)


def test_a_checkpoint_is_evaluated_in_the_memory_format_its_run_trained_in(
    runs: list[Path], tmp_path: Path
) -> None:
    """A channels-last run's net comes back channels-last (as the run evaluated it, and the fast path of a
    CPU's max-pooling), with the same softmax as in the default format; other runs' nets in the default."""

    def conv_weights(folder: Path) -> list[torch.Tensor]:
        net = checkpoint.restore(checkpoint.load(folder / "checkpoints" / "last.pt")).model
        return [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d)]

    for fmt in ("channels_last", "no_channels_last"):  # the fast recipe's default, and the paper's
        train(
            tiny(
                tmp_path / fmt,
                seed=0,
                input_size=6,
                epochs=2,
                dropout=0.0,
                channels_last=fmt == "channels_last",
            )
        )
    cl, plain = conv_weights(tmp_path / "channels_last"), conv_weights(tmp_path / "no_channels_last")
    # (conv1 of a grey-image net, [C, 1, k, k], is both at once: the others tell the formats apart)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in cl)
    assert any(not w.is_contiguous() for w in cl) and all(w.is_contiguous() for w in plain)
    path = tmp_path / "channels_last" / "checkpoints" / "last.pt"
    result = evaluate_checkpoints([str(path)], dataset="digits", views="center")
    torch.testing.assert_close(result["probs"], _by_hand(path, "center")[0], rtol=1e-4, atol=1e-5)


def test_ensemble_averages_the_nets_softmax(runs: list[Path]) -> None:
    result = evaluate_checkpoints([str(p) for p in runs], dataset="digits", views="flip")
    a, b = result["members"]
    torch.testing.assert_close(result["probs"], (a["probs"] + b["probs"]) / 2)
    assert not torch.allclose(a["probs"], b["probs"])  # two different nets
    # One pass over several models (same preprocessing) gives the same ensemble.
    ckpts = [checkpoint.load(p) for p in runs]
    models = [checkpoint.build_model(c) for c in ckpts]
    loader = data.BatchLoader(
        data.load("digits", "test"), 100, train=False, aug=data.AugmentConfig.from_dict(ckpts[0]["augment"]),
        stats=data.DataStats.from_dict(ckpts[0]["data_stats"]), seed=0, device="cpu", views="flip",
    )  # fmt: skip
    assert ckpts[0]["data_stats"]["mean"] == ckpts[1]["data_stats"]["mean"]  # both saw the whole train set
    joint = evaluate(models, loader, "cpu", amp=checkpoint.restore(ckpts[0]).amp)
    torch.testing.assert_close(joint["probs"], result["probs"], rtol=1e-4, atol=1e-6)
    assert len(joint["members"]) == 2


def test_eval_command_prints_json_and_writes_files(
    runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    code = cli.main(["eval", *map(str, runs), "--views", "tencrop", "--json", "--out", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["members"]) == 2 and doc["views"] == "tencrop"
    assert 0.0 <= doc["top1_err"] <= 1.0 and len(doc["per_class_acc"]) == 10
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,accuracy,count" and len(rows) == 11
    before = (out / "eval.json").read_bytes()
    assert cli.main(["eval", str(runs[0]), "--out", str(out)]) == 2  # the first eval's files are kept
    assert "already exists; choose another --out, or pass --force" in capsys.readouterr().err
    assert (out / "eval.json").read_bytes() == before
    code = cli.main(["eval", str(runs[0]), "--out", str(out), "--force"])
    text = capsys.readouterr().out
    assert code == 0 and "top-1 error" in text and "per-class accuracy" in text
    # Error and accuracy side by side (train's lines say accuracy, eval's said only error).
    found = re.search(r"top-1 error +([0-9.]+)% \(accuracy +([0-9.]+)%\)", text)
    assert found is not None and float(found.group(1)) + float(found.group(2)) == pytest.approx(100.0)


def test_eval_refuses_mismatched_data(runs: list[Path], tmp_path: Path) -> None:
    if fashion_mnist_installed():
        with pytest.raises(CnnlabError, match="evaluate on the data set it was trained on"):
            evaluate_checkpoints([str(runs[0])], dataset="fashion-mnist")
    with pytest.raises(CnnlabError, match="not found"):
        evaluate_checkpoints([str(tmp_path / "none.pt")])
