"""cnnlab/models/catalog.json, which `cnnlab models` prints without torch, says what the registry says."""

from __future__ import annotations

import pytest

from cnnlab import catalog, models
from cnnlab.cli import main
from cnnlab.summary import count_params


def test_the_catalogue_matches_the_registry() -> None:
    # A model added or a layer changed: run `python -m cnnlab.catalog` to rewrite the file.
    assert catalog.load() == catalog.build(), "cnnlab/models/catalog.json is stale: python -m cnnlab.catalog"


@pytest.mark.parametrize("name", ["alexnet", "alexnet_small", "googlenet", "lenet5", "vgg11_bn"])
def test_parameters_at_any_class_count(name: str) -> None:
    entry = next(e for e in catalog.load() if e["name"] == name)
    for classes in (1, 7, 1000, 21_841):
        assert catalog.params(entry, classes) == count_params(name, classes)


def test_models_lists_both_counts_the_docs_quote(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "params (1000 classes)" in out and "10 classes, grey" in out
    lines = out.splitlines()
    rule = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    rows = {line.split()[0]: line for line in lines[rule[0] + 1 : rule[1]]}
    assert list(rows) == models.names()
    assert "664,520" in rows["alexnet_small"] and "408,490" in rows["alexnet_small"]
    assert "145,000" in rows["lenet5"] and "60,850" in rows["lenet5"] and "1x32x32" in rows["lenet5"]
    assert "62,378,344" in rows["alexnet"] and "60,965,224" in rows["alexnet_grouped"]
    assert main(["models", "--num-classes", "10"]) == 0
    assert "58,322,314" in capsys.readouterr().out  # alexnet at 10 classes


def test_googlenet_counts_with_and_without_its_auxiliary_heads(capsys: pytest.CaptureFixture[str]) -> None:
    """13.4M with the two training-only heads is what a newcomer sees; inference uses the smaller count."""
    import torch

    for name in ("googlenet", "googlenet_torchvision"):
        with torch.device("meta"):
            bare = models.create(name, 1000, aux_logits=False)
        entry = next(e for e in catalog.load() if e["name"] == name)
        assert catalog.params(entry, 1000, "params_no_aux") == sum(p.numel() for p in bare.parameters())
        assert catalog.params(entry, 1000, "params_no_aux") < catalog.params(entry, 1000)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("googlenet "))
    assert "13,378,280" in row and "6,998,552" in row and "w/o aux heads" in out
