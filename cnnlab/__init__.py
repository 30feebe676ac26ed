"""cnnlab: AlexNet, VGG and GoogLeNet as their papers describe them, recipes and claims as commands."""

from cnnlab.errors import CnnlabError

__version__ = "0.1.0"
__all__ = ["CnnlabError", "__version__"]
