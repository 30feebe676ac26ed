"""The zoo's catalogue, torch-free: what `cnnlab models` prints without building (or importing) anything.

cnnlab/models/catalog.json holds, for each registered model, its family, default input, paper and
description, and its parameter counts at two class counts; every model's parameters grow linearly with
the classes (only the last layers, and GoogLeNet's auxiliary heads, depend on them), so any other count
follows exactly. The small-image nets (default input 32 px or less) also carry the count the docs quote:
10 classes, grey images, as Fashion-MNIST. `python -m cnnlab.catalog` rewrites the file from the live
registry; tests/test_catalog.py fails when the two differ (a model added, a layer changed).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).parent / "models" / "catalog.json"
# The two class counts stored for each model: ImageNet's, and the small data sets'.
CLASSES = (1000, 10)
SMALL_INPUT = 32  # default input side up to which a net is a small-image one, quoted at 10 grey classes
QUOTED = {"num_classes": 10, "in_channels": 1}


@functools.cache
def load() -> list[dict[str, Any]]:
    """The catalogue's entries, in registration order."""
    entries: list[dict[str, Any]] = json.loads(CATALOG.read_text())["models"]
    return entries


def params(entry: dict[str, Any], num_classes: int, key: str = "params") -> int:
    """Parameters of a catalogue entry at `num_classes` (its own input channels); `key="params_no_aux"`:
    without the auxiliary classifiers (GoogLeNet's), for the entries that have them."""
    (a, b), (pa, pb) = CLASSES, (entry[key][str(c)] for c in CLASSES)
    per_class, rest = divmod(pa - pb, a - b)
    assert rest == 0, f"{entry['name']}: parameters not linear in the classes; rebuild the catalogue"
    return int(pb + (num_classes - b) * per_class)


def build() -> list[dict[str, Any]]:
    """The catalogue as the live registry gives it (imports torch and builds each model on meta)."""
    # Imported here, as in _count_without_aux: `cnnlab models` reads catalog.json without torch.
    from cnnlab import models
    from cnnlab.summary import count_params  # also torch: imported here for the same reason

    entries = []
    for name in models.names():
        info = models.info(name)
        entry: dict[str, Any] = {
            "name": name,
            "family": info.family,
            "input_size": info.input_size,
            "in_channels": info.in_channels,
            "paper": info.paper,
            "description": info.description,
            "params": {str(c): count_params(name, c) for c in CLASSES},
        }
        if "aux_logits" in info.switches:
            # GoogLeNet's two auxiliary classifiers (sec. 5) train only; inference drops them.
            entry["params_no_aux"] = {str(c): _count_without_aux(name, c) for c in CLASSES}
        if info.input_size <= SMALL_INPUT:
            entry["quoted"] = {**QUOTED, "params": count_params(name, **QUOTED)}
        entries.append(entry)
    return entries


def _count_without_aux(name: str, num_classes: int) -> int:
    import torch

    # Imported here: `cnnlab models` reads catalog.json and must not import torch.
    from cnnlab import models

    with torch.device("meta"):
        net = models.create(name, num_classes, models.info(name).in_channels, aux_logits=False)
    return sum(p.numel() for p in net.parameters())


def text(entries: list[dict[str, Any]]) -> str:
    return json.dumps({"models": entries}, indent=1) + "\n"


if __name__ == "__main__":
    CATALOG.write_text(text(build()))
    print(f"wrote {CATALOG}")
