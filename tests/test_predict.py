"""`predict` on real image files: the same preprocessing (and so the same answer) as evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import tiny  # tests/ is on sys.path (no __init__.py)

from cnnlab import cli, data
from cnnlab.errors import CnnlabError
from cnnlab.evaluate import evaluate_checkpoints
from cnnlab.predict import predict
from cnnlab.training import train


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    train(tiny(root / "run", epochs=2, dropout=0.0))
    return root / "run" / "checkpoints" / "best.pt"


def _write_pngs(folder: Path, count: int) -> list[str]:
    """The first test digits as 8-bit grey PNG files (lossless: the pixels evaluation sees)."""
    ds = data.load("digits", "test")
    paths = []
    for i in range(count):
        path = folder / f"digit{i}_label{int(ds.labels[i])}.png"
        Image.fromarray(ds.images[i, 0].numpy().astype(np.uint8), mode="L").save(path)
        paths.append(str(path))
    return paths


def test_predict_matches_evaluation_on_the_same_images(ckpt: Path, tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path, 6)
    results = predict(str(ckpt), paths, top=3)
    expected = evaluate_checkpoints([str(ckpt)], dataset="digits", views="center", limit=6)["probs"]
    for r, p in zip(results, expected, strict=True):
        probs = [t["prob"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert r["top"][0]["index"] == int(p.argmax())
        assert r["top"][0]["class"] == str(int(p.argmax()))  # digits' class names are the digits
        assert probs[0] == pytest.approx(float(p.max()), abs=1e-5)


def test_predict_command(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = _write_pngs(tmp_path, 2)
    # An RGB JPEG of another size is converted to the run's grey 8x8 input.
    big = Image.open(paths[0]).convert("RGB").resize((40, 40))
    big.save(tmp_path / "big.jpg")
    assert cli.main(["predict", str(ckpt), *paths, str(tmp_path / "big.jpg"), "--top", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [len(d["top"]) for d in doc] == [2, 2, 2]
    assert all(0.0 <= t["prob"] <= 1.0 for d in doc for t in d["top"])
    assert cli.main(["predict", str(ckpt), paths[0]]) == 0
    assert "%" in capsys.readouterr().out
    with pytest.raises(CnnlabError, match="no such file"):
        predict(str(ckpt), [str(tmp_path / "missing.png")])
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(CnnlabError):
        predict(str(ckpt), [str(tmp_path / "broken.png")])
    assert torch.get_num_threads() >= 1
