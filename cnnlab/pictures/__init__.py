"""Pictures of what a trained network learned, where it looks and what it gets wrong.

One picture per module, each with its command:

- `paper`: the AlexNet paper's Figure 3 (`cnnlab filters`) and Figure 4 (`cnnlab neighbors`);
- `activations`: every layer's most active feature maps for one image (`cnnlab activations`);
- `occlusion`: Zeiler & Fergus's occlusion sensitivity (`cnnlab occlusion`);
- `gradcam`: Grad-CAM heat maps (`cnnlab gradcam`);
- `mistakes`: the most confident wrong predictions on a data set (`cnnlab mistakes`);
- `runpage`: one self-contained HTML page for a whole run (`cnnlab report`, `write_report`).

`common` holds what they share (the net and its preprocessing from a checkpoint, saving figures) and
`layers` which tensors are a net's feature maps. The commands' flags are in cnnlab/commands/pictures.py
(torch-free); a module here is imported only when its command runs.
"""

from __future__ import annotations

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
    "subset",
    "write_filters",
    "write_neighbors",
]
