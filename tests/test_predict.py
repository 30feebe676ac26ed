"""`predict` on real image files: the same preprocessing (and so the same answer) as evaluation."""

from __future__ import annotations

import csv
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
from cnnlab.predict import expand_inputs, predict
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


def test_expand_folders_and_globs(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/2.png", "a/1.jpg", "a/deep/3.png", "a/.hidden.png"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    folder = [str(tmp_path / "a" / n) for n in ("1.jpg", "2.png", "deep/3.png")]
    assert expand_inputs([str(tmp_path / "a")]) == folder
    assert expand_inputs([str(tmp_path / "a" / "**" / "*.png")]) == [folder[1], folder[2]]
    # Each file once, in the order given: a file named again by a folder is not repeated.
    assert expand_inputs([folder[2], str(tmp_path / "a")]) == [folder[2], folder[0], folder[1]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="holds no image files"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(CnnlabError, match="no image file matches"):
        expand_inputs([str(tmp_path / "*.gif")])


def test_predict_a_folder_into_a_csv(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    paths = _write_pngs(folder, 3) + _write_pngs(folder / "sub", 2)
    out = tmp_path / "out.csv"
    argv = ["predict", str(ckpt), str(folder), "--csv", str(out), "--top", "2", "--batch-size", "2"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert f"wrote 5 rows to {out}" in captured.out
    assert "predict: 5/5 images" in captured.err  # progress goes to stderr, stdout stays clean
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "class_1", "prob_1", "class_2", "prob_2"]
    assert sorted(r[0] for r in rows[1:]) == sorted(paths)
    expected = {r["path"]: r for r in predict(str(ckpt), paths, top=2)}
    for row in rows[1:]:
        assert row[1] == expected[row[0]]["top"][0]["class"]
        assert float(row[2]) == pytest.approx(expected[row[0]]["top"][0]["prob"], abs=1e-6)
    # An existing file is never overwritten without --force, and is left as it was.
    before = out.read_text()
    assert cli.main(["predict", str(ckpt), str(folder / "*.png"), "--csv", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == before
    assert cli.main(["predict", str(ckpt), str(folder / "*.png"), "--csv", str(out), "--force"]) == 0
    assert len(list(csv.reader(out.open()))) == 1 + 3
