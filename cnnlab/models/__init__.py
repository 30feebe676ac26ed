"""The model zoo: `create(name, num_classes, in_channels, **switches)`, `names()`, `info(name)`.

Importing the family modules registers their builders (AlexNets, then VGGs, GoogLeNets, LeNet-5 and
the AlexNet paper's Figure 1 net).
"""

from cnnlab.models.registry import (
    AuxOutputs,
    ModelInfo,
    check_switch_names,
    create,
    create_from,
    info,
    names,
    split_outputs,
)

# isort: off
from cnnlab.models import alexnet  # noqa: F401  (importing registers the builders, in this order)
from cnnlab.models import alexnet_torchvision  # noqa: F401
from cnnlab.models import alexnet_parallel  # noqa: F401
from cnnlab.models import vgg  # noqa: F401
from cnnlab.models import googlenet  # noqa: F401
from cnnlab.models import lenet  # noqa: F401
from cnnlab.models import figure1  # noqa: F401

# isort: on
from cnnlab.models.googlenet import AUX_LOSS_WEIGHT

__all__ = [
    "AUX_LOSS_WEIGHT",
    "AuxOutputs",
    "ModelInfo",
    "check_switch_names",
    "create",
    "create_from",
    "info",
    "names",
    "split_outputs",
]
