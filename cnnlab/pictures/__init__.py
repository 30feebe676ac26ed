"""Pictures of what a trained network learned, where it looks and what it gets wrong.

One picture per module, each with its command:

- `paper`: the AlexNet paper's Figure 3 (`cnnlab filters`) and Figure 4 (`cnnlab neighbors`);
- `activations`: every layer's most active feature maps for one image (`cnnlab activations`);
- `occlusion`: Zeiler & Fergus's occlusion sensitivity (`cnnlab occlusion`);
- `gradcam`: Grad-CAM heat maps (`cnnlab gradcam`);
- `mistakes`: the most confident wrong predictions on a data set (`cnnlab mistakes`);
- `runpage`: one self-contained HTML page for a whole run (`cnnlab report`, `write_report`).

`common` holds what they share (the net and its preprocessing from a checkpoint, saving figures) and
`layers` which tensors are a net's feature maps. Modules are imported when a command runs, so
`cnnlab --help` does not pay for matplotlib.
"""

from __future__ import annotations

from typing import Any

from cnnlab.pictures.paper import (
    MIN_WIDTH,
    PANEL_GAP,
    SEP,
    SEP_VALUE,
    Neighbors,
    embed_all,
    filter_grid,
    find_neighbors,
    kernel_image,
    nearest,
    raw_image,
    subset,
    write_filters,
    write_neighbors,
)

__all__ = [
    "MIN_WIDTH",
    "PANEL_GAP",
    "SEP",
    "SEP_VALUE",
    "Neighbors",
    "embed_all",
    "filter_grid",
    "find_neighbors",
    "kernel_image",
    "nearest",
    "raw_image",
    "register_cli",
    "subset",
    "write_filters",
    "write_neighbors",
]

# The sub-commands' modules, in the order `cnnlab --help` lists their commands.
COMMAND_MODULES = (
    "cnnlab.pictures.paper",
    "cnnlab.pictures.activations",
    "cnnlab.pictures.occlusion",
    "cnnlab.pictures.gradcam",
    "cnnlab.pictures.mistakes",
    "cnnlab.pictures.runpage",
)


def register_cli(sub: Any) -> None:
    """Every picture command (cnnlab.cli lists this package as one of its COMMAND_MODULES)."""
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
