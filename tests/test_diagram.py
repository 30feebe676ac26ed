"""`diagram`: a real SVG or PNG with the layer names in it, and clear errors."""

from __future__ import annotations

import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from cnnlab import diagram
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.summary import build, layer_table

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")


def executed_layers(model, input_size) -> list[str]:
    return [r.name for r in layer_table(model, input_size) if r.ran]


@needs_dot
def test_svg_is_xml_with_every_layer_name(tmp_path: Path) -> None:
    model = build("alexnet_small", num_classes=10, in_channels=1)
    out = diagram.write(model, (1, 28, 28), tmp_path / "net.svg")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text") and t.text}
    for name in executed_layers(model, (1, 28, 28)):
        assert name in texts
    assert "1x28x28" in texts  # the input's shape, batch dimension dropped


@needs_dot
def test_png_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "net.png"
    assert main(["diagram", "alexnet_small", "--input-size", "3x32x32", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = Image.open(io.BytesIO(data)).size
    assert height > width > 50  # a top-to-bottom chain of layers
    assert str(out) in capsys.readouterr().out


def test_missing_dot_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagram.shutil, "which", lambda name: None)
    with pytest.raises(CnnlabError, match="apt-get install graphviz"):
        diagram.write(build("alexnet_small"), (3, 28, 28), tmp_path / "net.svg")


def test_bad_suffix_and_small_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CnnlabError, match=r"\.svg or \.png"):
        diagram.write(build("alexnet_small"), (3, 28, 28), tmp_path / "net.pdf")
    assert main(["diagram", "alexnet", "--input-size", "20", "-o", str(tmp_path / "x.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error:") and "Traceback" not in err
