"""The AlexNet paper's claims and numbers, in one table (sections 3 to 6 of the paper; the wording is ours).

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
    )
}
