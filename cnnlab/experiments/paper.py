"""The papers' claims and numbers, in one table (the wording is ours): the AlexNet paper's (sections 3 to 6),
then its successors', VGG's and GoogLeNet's, each entry naming its paper.

Every report and the index quote these entries; no claim module writes a paper number of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PaperClaim:
    id: str
    title: str
    section: str  # where in the paper (Krizhevsky, Sutskever, Hinton, NIPS 2012)
    says: str  # the claim in our words
    number: str  # the paper's number, as the index shows it
    values: dict[str, float] = field(default_factory=dict)  # the same numbers, for plots and ratios
    paper: str = "alexnet"  # which paper (a key of PAPERS)


# The papers, by the key `cnnlab reproduce --help` and the groups `all`, `all-vgg`, `all-googlenet` use.
PAPERS = {
    "alexnet": "Krizhevsky et al. 2012",
    "vgg": "Simonyan & Zisserman 2015",
    "googlenet": "Szegedy et al. 2015",
}
TITLES = {
    "alexnet": "The AlexNet paper's claims",
    "vgg": "The VGG paper's claims",
    "googlenet": "The GoogLeNet paper's claims",
}


CLAIMS: dict[str, PaperClaim] = {
    c.id: c
    for c in (
        PaperClaim(
            "relu-vs-tanh",
            "ReLU trains faster than tanh",
            "section 3.1, Figure 1",
            "A four-layer convolutional net with ReLUs reaches 25% training error on CIFAR-10 six times "
            "faster (in epochs) than the same net with tanh units; each net had its own, fastest, "
            "learning rate and no regularisation.",
            "6x fewer epochs to 25% training error (CIFAR-10)",
            {"speedup": 6.0, "threshold": 0.25},
        ),
        PaperClaim(
            "lrn",
            "Local response normalisation lowers the error",
            "section 3.3",
            "Response normalisation lowers the top-1 and top-5 error rates by 1.4 and 1.2 points on "
            "ImageNet; a four-layer CIFAR-10 net goes from 13% test error without it to 11% with it.",
            "-1.4 top-1 / -1.2 top-5 points (ImageNet); 13% -> 11% (CIFAR-10)",
            {"top1": 0.014, "top5": 0.012, "cifar10_without": 0.13, "cifar10_with": 0.11},
        ),
        PaperClaim(
            "overlapping-pooling",
            "Overlapping pooling lowers the error",
            "section 3.4",
            "Pooling with z=3, s=2 (overlapping) instead of z=s=2 lowers the top-1 and top-5 error rates by "
            "0.4 and 0.3 points, and the nets overfit slightly less.",
            "-0.4 top-1 / -0.3 top-5 points (ImageNet)",
            {"top1": 0.004, "top5": 0.003},
        ),
        PaperClaim(
            "pca-lighting",
            "PCA lighting augmentation lowers the error",
            "section 4.1",
            "Adding multiples of the principal components of the RGB pixel values (alpha ~ N(0, 0.1)) to "
            "each training image lowers the top-1 error rate by over 1 point.",
            "over -1 top-1 point (ImageNet)",
            {"top1": 0.01},
        ),
        PaperClaim(
            "dropout",
            "Dropout stops overfitting, at twice the iterations",
            "section 4.2",
            "Without dropout the net overfits substantially; dropout (0.5 in the first two fully connected "
            "layers) roughly doubles the number of iterations needed to converge.",
            "stops substantial overfitting; ~2x the iterations to converge",
            {"iterations_ratio": 2.0},
        ),
        PaperClaim(
            "ten-crop",
            "Ten-crop testing beats the centre crop",
            "section 4.1",
            "At test time the net averages its softmax over ten patches (four corners and the centre, and "
            "their mirrors); this is how the paper's test errors are measured. The paper gives no number "
            "for the gain (cuda-convnet2 reports top-1/top-5 error 42.5%/19.8% with one view, 40.4%/18.2% "
            "multiview).",
            "lower error than the centre crop (cuda-convnet2: top-1 42.5% -> 40.4%, top-5 19.8% -> 18.2%)",
            {
                "cuda_convnet2_single_top1": 0.425,
                "cuda_convnet2_multi_top1": 0.404,
                "cuda_convnet2_single_top5": 0.198,
                "cuda_convnet2_multi_top5": 0.182,
            },
        ),
        PaperClaim(
            "ensemble",
            "Averaging several nets lowers the error",
            "section 6, Table 2",
            "Averaging the predictions of several nets lowers the error: ILSVRC-2012 validation top-5 "
            "error 18.2% with 1 net, 16.4% with 5, 15.4% with 7 (two of them pre-trained on the Fall "
            "2011 release; 15.3% on the test set); top-1 40.7%, 38.1%, 36.7%.",
            "top-5: 1 net 18.2%, 5 nets 16.4%, 7 nets 15.4% (ILSVRC-2012 val)",
            {
                "top5_1": 0.182,
                "top5_5": 0.164,
                "top5_7": 0.154,
                "top1_1": 0.407,
                "top1_5": 0.381,
                "top1_7": 0.367,
            },
        ),
        PaperClaim(
            "paper-init",
            "The paper's initialisation trains the net",
            "section 5",
            "Weights from N(0, 0.01); biases of conv2, conv4, conv5 and the hidden fully connected layers "
            "set to 1 (to give the ReLUs positive inputs early), the others 0. Caffe's reference model "
            "found that bias 1 left the loss flat and used 0.1; modern code uses Kaiming's init.",
            "N(0, 0.01) with bias 1 trains (paper); Caffe: bias 1 stays flat, use 0.1",
            {"weight_std": 0.01, "bias": 1.0, "caffe_bias": 0.1},
        ),
        # -- VGG (Simonyan & Zisserman, ICLR 2015) -----------------------------------------------------
        PaperClaim(
            "vgg-small-filters",
            "Stacks of 3x3 filters see as far as one large filter, with fewer weights",
            "section 2.3",
            "A stack of two 3x3 conv layers (no pooling between) has a 5x5 effective receptive field, three "
            "have 7x7; with C channels in and out, three 3x3 layers have 3(3^2 C^2) = 27C^2 weights where "
            "one 7x7 layer has 49C^2 (81% more), and they put three non-linearities in place of one.",
            "2 x 3x3 see 5x5 (18C^2 vs 25C^2, 28% fewer); 3 x 3x3 see 7x7 (27C^2 vs 49C^2, 45% fewer)",
            {"fewer_2": 0.28, "fewer_3": 0.45, "more_7x7": 0.81},
            paper="vgg",
        ),
        PaperClaim(
            "vgg-cost",
            "VGG-16 costs more than AlexNet: parameters, multiply-adds, activation memory",
            "Table 2; section 1 of the AlexNet paper",
            "Configuration D (VGG-16) has 138 million parameters (Table 2) against AlexNet's 60 million "
            "(Krizhevsky et al. 2012, abstract); it is slower and its feature maps need more memory. The "
            "paper gives no multiply-add count; 15.5 billion at 224 px is the figure commonly quoted.",
            "VGG-16 138M parameters (AlexNet 60M); ~15.5G multiply-adds (commonly quoted)",
            {"vgg16_params": 138e6, "alexnet_params": 60e6, "vgg16_macs": 15.5e9},
            paper="vgg",
        ),
        PaperClaim(
            "vgg-depth",
            "Deeper VGG configurations classify better",
            "section 4.1, Table 3",
            "At a single test scale, top-1 / top-5 validation error falls with depth: configuration A (11 "
            "weight layers) 29.6% / 10.4%, B (13) 28.7% / 9.9%, D (16) 27.0% / 8.8%.",
            "top-1 error A 29.6% -> B 28.7% -> D 27.0% (ILSVRC-2012 val, single scale)",
            {"A": 0.296, "B": 0.287, "D": 0.270},
            paper="vgg",
        ),
        PaperClaim(
            "vgg-lrn",
            "LRN does not improve VGG configuration A",
            "section 4.1, Table 3",
            'Local response normalisation after the first layer (A-LRN) "does not improve the performance '
            'of model A": top-1 / top-5 error 29.7% / 10.5% with it, 29.6% / 10.4% without.',
            "A 29.6% vs A-LRN 29.7% top-1: no effect",
            {"A": 0.296, "A_LRN": 0.297},
            paper="vgg",
        ),
        # -- GoogLeNet (Szegedy et al., CVPR 2015) ---------------------------------------------------
        PaperClaim(
            "googlenet-cost",
            "GoogLeNet: 12 times fewer parameters than AlexNet, 1.5 billion multiply-adds",
            "abstract; section 5",
            'The network "uses 12 times fewer parameters than" AlexNet (abstract) and was designed for '
            '"a computational budget of 1.5 billion multiply-adds at inference time" (section 5); the '
            "auxiliary classifiers are discarded at inference.",
            "12x fewer parameters than AlexNet; 1.5 billion multiply-adds at inference",
            {"fewer_than_alexnet": 12.0, "macs": 1.5e9},
            paper="googlenet",
        ),
        PaperClaim(
            "googlenet-reductions",
            "1x1 reductions keep the Inception modules affordable",
            "section 4, Figure 2",
            "1x1 convolutions compute reductions before the expensive 3x3 and 5x5 convolutions; without "
            "them (the naive module of Figure 2a) the cost would blow up. The paper gives no number for "
            "the saving.",
            "reductions before the 3x3 and 5x5 convolutions avoid a blow-up of the cost (no number)",
            {},
            paper="googlenet",
        ),
        PaperClaim(
            "googlenet-aux",
            "GoogLeNet's auxiliary classifiers help a little",
            "section 5",
            "Two auxiliary classifiers on 4a and 4d, their losses weighted 0.3 in training and discarded at "
            "inference; the arXiv version reports that control experiments found their effect "
            '"relatively minor (around 0.5%)" (as quoted in our brief, not checked against the paper).',
            'about 0.5 points of error ("relatively minor")',
            {"effect": 0.005, "weight": 0.3},
            paper="googlenet",
        ),
    )
}
