"""The maths of the metrics against independent computations: FID, KID, IS, SSIM, AUROC, bootstrap."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity
from skimage.metrics import structural_similarity
from torch_fidelity.metric_fid import fid_statistics_to_metric

from metrics import fidelity
from metrics.frechet import frechet_distance, frechet_distance_from_stats
from metrics.ssim import ssim_scores
from metrics.stats import auroc, bootstrap_indices, macro_auroc, mean_interval
from tests.metrics_fixtures import TINY, tiny_inception_extractor


def fid_scipy(x1, x2):
    """The textbook route: np.cov and scipy's sqrtm."""
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n1, n2, d", [(300, 260, 64), (40, 50, 64), (30, 90, 48)])
def test_frechet_matches_scipy_sqrtm(n1, n2, d):
    rng = np.random.default_rng(n1 + d)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    x1 = rng.standard_normal((n1, d)) @ mix
    x2 = rng.standard_normal((n2, d)) @ mix * 1.3 + 0.2
    ours, ref = frechet_distance(x1, x2), fid_scipy(x1, x2)
    # both float64; sqrtm of a singular (n < d) product is the less accurate of the two (~1e-10 relative)
    assert abs(ours - ref) / abs(ref) < 1e-6
    stats = [{"mu": x.mean(0), "sigma": np.cov(x, rowvar=False)} for x in (x1, x2)]
    tf = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert abs(ours - tf) / abs(tf) < 1e-6  # torch-fidelity's eigvals(S1 S2) route
    assert (
        abs(frechet_distance_from_stats(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"]) - ref)
        < 1e-6 * ref
    )


def test_frechet_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((200, 32))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)  # eigen-solve round-off only


def kid_numpy(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written from the KID paper (Binkowski et al. 2018)."""
    d, m = x.shape[1], len(x)
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))  # noqa: E731
    return off(kxx) + off(kyy) - 2 * kxy.mean()


def test_kid_matches_numpy():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((120, 16)), rng.standard_normal((120, 16)) * 1.2 + 0.1
    mean, std = fidelity.kid(x, y)
    # subset size min(N, 1000) = N: every subset is a permutation of all samples, and MMD^2 ignores order
    assert mean == pytest.approx(kid_numpy(x, y), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-12)


def is_by_hand(logits, splits=10, seed=2020):
    logits = logits[np.random.RandomState(seed).permutation(len(logits))]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for k in range(splits):
        part = p[k * len(p) // splits : (k + 1) * len(p) // splits]
        marginal = part.mean(0)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(marginal)), axis=1))))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_hand_computation():
    logits = np.random.default_rng(2).standard_normal((100, 7)) * 3
    mean, std = fidelity.inception_score(logits)
    ref_mean, ref_std = is_by_hand(logits)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8)
    # closed forms: identical predictions give 1; confident ones lie between 1 and the number of classes
    assert fidelity.inception_score(np.zeros((50, 5)))[0] == pytest.approx(1.0)
    assert 1.5 < fidelity.inception_score(np.tile(np.eye(5) * 50, (20, 1)))[0] <= 5.0


def test_ssim_matches_scikit_image_called_directly():
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (5, 40, 40), dtype=np.uint8)
    fake = np.clip(real + rng.normal(0, 30, real.shape), 0, 255).astype(np.uint8)
    ours = ssim_scores(fake, real)
    for f, r, s in zip(fake, real, ours):
        ref = structural_similarity(
            f.astype(float) / 255,
            r.astype(float) / 255,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert s == pytest.approx(ref, abs=1e-12)  # the same call: 11x11 is what sigma 1.5 gives
    assert ssim_scores(real, real) == pytest.approx(np.ones(5))


def test_auroc_matches_pairwise_count():
    rng = np.random.default_rng(4)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(pairwise)
    assert np.isnan(auroc(scores, np.ones(60, bool)))
    probs = np.stack([scores, -scores], 1)
    assert macro_auroc(probs, np.stack([labels, labels], 1)) == pytest.approx(0.5)


def test_bootstrap_interval_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(5)
    widths = []
    for n in (50, 800):
        values = rng.normal(0.6, 0.1, n)
        lo, hi = mean_interval(values, bootstrap_indices(n, 1000, seed=0))
        assert lo < values.mean() < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # ~1/sqrt(N): 4x narrower expected for 16x the cases


def test_pipeline_equals_torch_fidelity_calculate_metrics():
    """Our extraction (Gray3 + torch-fidelity extractor) + FD + KID = torch-fidelity's own calculate_metrics."""
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (40, 24, 24), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    ex = tiny_inception_extractor()
    module = ex.create(torch.device("cpu"))
    fa, fb = (fidelity.extract(ex, module, x, batch_size=16)["pool"] for x in (a, b))
    ref = torch_fidelity.calculate_metrics(
        input1=fidelity.Gray3(a),
        input2=fidelity.Gray3(b),
        fid=True,
        kid=True,
        feature_extractor=TINY,
        kid_subset_size=40,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    # torch-fidelity computes on the float32 features, we on float64 copies of the same: the cubic kernel of
    # KID amplifies float32 round-off to ~4e-5 relative
    assert frechet_distance(fa, fb) == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert fidelity.kid(fa, fb)[0] == pytest.approx(ref["kernel_inception_distance_mean"], rel=2e-4)
