"""The model zoo: `create(name, num_classes, in_channels, **switches)`, `names()`, `info(name)`.

Importing the family modules registers their builders (AlexNets, then VGGs, then GoogLeNets).
"""

from cnnlab.models.registry import (
    AUX_WEIGHT,
    AuxOutputs,
    ModelInfo,
    create,
    info,
    names,
    split_outputs,
)

from cnnlab.models import alexnet  # noqa: E402,F401,I001  (registers the builders)

__all__ = ["AUX_WEIGHT", "AuxOutputs", "ModelInfo", "create", "info", "names", "split_outputs"]
