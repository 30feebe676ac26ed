"""Where the papers say so and why it matters: the text of every `cnnlab check` deviation.

Sections are AlexNet's (Krizhevsky et al. 2012) unless a family has its own; the reasons likewise.
"""

from __future__ import annotations

# The paper's section for each aspect, per family (AlexNet: Krizhevsky et al. 2012).
SECTIONS: dict[str, dict[str, str]] = {
    "alexnet": {
        "conv": "3.5, Fig. 2",
        "groups": "3.2",
        "shape": "3.5, Fig. 2",
        "lrn": "3.3",
        "pool": "3.4",
        "act": "3.1",
        "dropout": "4.2",
        "linear": "3.5",
        "params": "1, 3.5",
        "softmax": "3.5",
        "init": "5",
        "order": "3.5",
        "norm": "3.3",
    },
    "vgg": {
        "conv": "2.1, Table 1",
        "pool": "2.1",
        "act": "2.1",
        "dropout": "3.1",
        "linear": "2.1",
        "lrn": "2.1, 4.1",
        "init": "3.1",
        "params": "Table 2",
    },
    "googlenet": {"dropout": "5, Table 1", "lrn": "5 (Fig. 3)", "params": "5, Table 1"},
    "lenet": {"init": "Appendix C"},
}
DEFAULT_SECTION = {"alexnet": "3.5", "vgg": "2.1, Table 1", "googlenet": "5, Table 1", "lenet": "II.B"}


def section(family: str, aspect: str) -> str:
    found = SECTIONS.get(family, {}).get(aspect) or DEFAULT_SECTION.get(family)
    if found is None:
        return "-"
    return found if found[0].isalpha() and not found.startswith(("II", "I.")) else f"Sec. {found}"


WHY = {
    "width": "the number of maps sets this layer's capacity and the next layer's input; the paper's "
    "results and parameter count are for its widths",
    "kernel": "the receptive field; with stride and padding it sets every later map size",
    "stride": "sets every later map size: floor((in + 2*pad - kernel)/stride) + 1",
    "padding": "sets every later map size: floor((in + 2*pad - kernel)/stride) + 1",
    "groups": "groups=2 is the paper's two-GPU split (each tower reads only its own maps): it halves this "
    "layer's weights; groups=1 is the one-tower equivalent (alexnet vs alexnet_grouped)",
    "slices": "LeNet-5's C3 reads only some S2 maps (Table I) to break symmetry and save connections",
    "units": "the width of the fully connected layer; the paper's parameter count is for its sizes",
    "fc input": "the fc layer reads the flattened maps before it: another map size changes its weights",
    "lrn missing": "LRN reduced the paper's top-1/top-5 error by 1.4%/1.2% (Sec. 3.3)",
    "lrn extra": "the reference has no response normalisation here",
    "lrn size": "n is how many neighbouring maps the sum runs over; the paper's n=5 is a local "
    "neighbourhood, a large n normalises over nearly every map",
    "lrn alpha": "PyTorch's nn.LocalResponseNorm divides alpha by n: the paper's alpha=1e-4 with n=5 is "
    "alpha=5e-4 there; compared here in the paper's convention b = a / (k + alpha * sum a^2)^beta",
    "lrn beta": "the exponent of the normaliser",
    "lrn k": "the normaliser's offset: with a larger alpha*sum it decides how strong the normalisation is",
    "pool missing": "pooling sets the map sizes of every later layer",
    "pool extra": "the reference does not pool here: every later map is smaller",
    "pool": "overlapping pooling (3x3 stride 2) cut the paper's top-1/top-5 error by 0.4%/0.3% against "
    "2x2 stride 2 (Sec. 3.4); kernel and stride also set every later map size",
    "act missing": "without a nonlinearity this layer and the next collapse into one linear map",
    "act extra": "the reference has no activation here",
    "act": "ReLUs trained six times faster than tanh units to 25% CIFAR-10 error (Sec. 3.1, Fig. 1)",
    "order": "the paper applies ReLU, then LRN, then max pooling; normalising before the ReLU or after "
    "the pool computes something else",
    "dropout missing": "the paper drops each unit of fc6 and fc7 with probability 0.5 at training time; "
    "without it the net overfits substantially (Sec. 4.2)",
    "dropout extra": "the reference has no dropout here: it changes what is regularised",
    "dropout kind": "Dropout2d zeroes whole channels of conv maps; on fc outputs ([N, F]) PyTorch warns it "
    "is deprecated and will become an error; the paper drops single units: nn.Dropout",
    "dropout rate": "the paper drops each hidden unit with probability 0.5 (Sec. 4.2)",
    "norm missing": "the reference uses batch norm here",
    "norm extra": "the paper predates batch norm (2015): the reference has none here",
    "softmax": "nn.CrossEntropyLoss applies log-softmax itself: a softmax in the network makes it a softmax "
    "of a softmax, whose gradients shrink towards nothing; return the logits (the paper's softmax is the "
    "loss's)",
    "second layer": "the reference applies one such layer in this stage; the second changes what it computes",
    "missing layer": "a layer of the reference has no counterpart in yours",
    "extra layer": "your network has a layer the reference does not",
    "params": "the paper's parameter count; the difference says how many weights your layers add or lack",
    "init std": "the paper draws weights from N(0, 0.01) (Sec. 5); another scale changes how fast (and "
    "whether) training starts",
    "init bias": "the paper sets the biases of conv2, conv4, conv5, fc6 and fc7 to 1 'to provide the "
    "ReLUs with positive inputs', the others to 0 (Sec. 5)",
}


# Where the AlexNet reasons above do not apply, each family's own (keys missing here fall back to WHY).
FAMILY_WHY: dict[str, dict[str, str]] = {
    "lenet": {
        "act": "LeNet-5 squashes with f(a) = 1.7159 tanh(2a/3), so targets of +-1 sit where f still bends "
        "(Appendix A); another function changes what every unit computes",
        "pool": "LeNet-5's subsampling units average 2x2, scale by a trainable coefficient and add a bias "
        "per map (Sec. II.B); a fixed pool learns nothing there",
        "pool missing": "LeNet-5 halves the maps after C1 and C3 (S2, S4): every later size follows",
        "init std": "the paper draws weights uniformly in +-2.4/F, F the fan-in (Appendix C)",
        "init bias": "the paper draws biases like the weights, uniformly in +-2.4/F (Appendix C)",
        "dropout extra": "LeNet-5 (1998) has no dropout",
        "lrn extra": "LeNet-5 has no response normalisation",
        "order": "the paper's order within a stage is convolution, squashing, subsampling",
        "params": "LeNet-5 has 60,850 trainable parameters with a linear output (60,000 with the RBF units)",
    },
    "vgg": {
        "act": "VGG applies ReLU after every convolution and hidden fc layer (Sec. 2.1)",
        "pool": "VGG max-pools 2x2 with stride 2 after each block (Sec. 2.1): it sets every later map size",
        "init std": "VGG Sec. 3.1 draws weights with zero mean and variance 10^-2 (std 0.1)",
        "init bias": "VGG Sec. 3.1 sets the biases to 0",
        "order": "VGG applies ReLU right after each convolution (Sec. 2.1)",
    },
    "googlenet": {
        "act": "GoogLeNet uses ReLU in every convolution, inside the Inception modules too (Sec. 5)",
        "pool": "pooling windows and strides set every later map size (Table 1)",
        "order": "the layer order inside GoogLeNet's stem and modules follows Table 1 and Fig. 3",
    },
}
