"""`diagram`: a real SVG or PNG with the layer names in it, and clear errors."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import needs_dot
from PIL import Image

from cnnlab import diagram
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.summary import build, layer_table


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


def _clusters(source: str) -> dict[str, list[str]]:
    """Dashed block boxes of a graph's dot source: label -> the bold layer names drawn inside."""
    blocks = re.findall(r"subgraph cluster_\d+ \{(.*?)\n\t\}", source, re.S)
    label = r"label=(\S+)"
    return {re.search(label, b).group(1).strip('"'): re.findall(r"<B>([^<]+)</B>", b) for b in blocks}


@pytest.mark.parametrize(
    ("name", "size", "last"),
    [("alexnet", (3, 227, 227), "classifier.fc8"), ("vgg11", (3, 224, 224), "classifier.6"),
     ("alexnet_small", (1, 28, 28), "classifier.fc6"),
     ("alexnet_torchvision", (3, 224, 224), "classifier.6")],
)  # fmt: skip
def test_the_classifier_box_is_named_and_holds_the_last_layer(name: str, size: tuple, last: str) -> None:
    # The forward runs classifier[:-1] then classifier[-1]: torchview saw an unnamed "Sequential" box
    # without the last layer; it is the "classifier" block, whole.
    clusters = _clusters(diagram.graph(build(name, 10, size[0]), size).source)
    assert set(clusters) == {"features", "classifier"}
    assert last in clusters["classifier"] and all(n.startswith("classifier.") for n in clusters["classifier"])
    # One level deep: the block is one box, named, with the layers it holds.
    source = diagram.graph(build(name, 10, size[0]), size, depth=1).source
    assert "Sequential</TD>" not in source.replace("<B>features</B></TD></TR><TR><TD>Sequential", "")
    assert "<B>classifier</B>" in source and f"<B>{last}</B>" in source


def test_googlenet_diagram_has_its_auxiliary_heads_and_one_average_pool() -> None:
    """The heads that run only in training are drawn (they were left out), and the average pool once
    (the forward applied it twice). Needs no `dot`: the graph's source is checked."""
    source = diagram.graph(build("googlenet"), (3, 224, 224)).source
    for head in ("aux1", "aux2"):
        assert f"<B>{head}" in source, head
    assert source.count("<B>avgpool</B>") == 1


def test_a_deep_net_is_folded_to_a_readable_depth_unless_asked() -> None:
    """GoogLeNet's 162 boxes made a 1107x8501-px picture: without --depth it is folded until at most
    MAX_BOXES boxes remain (its auxiliary heads still drawn); an explicit --depth is kept; VGG and AlexNet
    stay whole."""
    g, depth = diagram.fitting_graph(build("googlenet"), (3, 224, 224))
    assert depth is not None and diagram._boxes(g) <= diagram.MAX_BOXES
    assert "<B>aux1" in g.source and "<B>aux2" in g.source
    g, depth = diagram.fitting_graph(build("googlenet"), (3, 224, 224), 9)
    assert depth == 9 and diagram._boxes(g) > diagram.MAX_BOXES
    assert diagram.fitting_graph(build("vgg16"), (3, 224, 224))[1] is None
